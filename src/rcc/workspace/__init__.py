"""The workspace: review mode, where the project is seen through a copy-on-write layer.

How the parts fit:
- rcc.workspace.changes (pure): the upper directory's entries and the project's current state in, a list of
  Changes out (added, modified, deleted, mode, symlink, replaced), each with its flags (executable, outside the
  project) and, when `rcc apply` must not write it, the reason (never writable, special file, link outside,
  too large, changed in the project meanwhile). Rendering for `rcc review` is here too.
- rcc.workspace.layer (effects): the per-session review directory under rcc's state dir (reviews/ID: upper,
  work, meta.json, manifest.json), mounting the overlay in a private mount namespace just before bwrap is
  exec'd, scanning the upper directory, and applying Changes to the project through no-follow writes.
- rcc.workspace.cli: `rcc review`, `rcc apply`, `rcc discard`.
"""
