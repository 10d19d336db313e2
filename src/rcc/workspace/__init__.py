"""The workspace: review mode, where the project is seen through a copy-on-write layer.

How the parts fit:
- rcc.workspace.changes (pure): the upper directory's entries and the project's current state in, a list of
  Changes out (added, modified, deleted, mode, symlink, replaced), each with its flags (executable, outside the
  project) and, when `rcc apply` must not write it, the reason (never writable, special file, link outside,
  too large, changed in the project meanwhile). Rendering for `rcc review` is here too.
- rcc.workspace.mount (effects, on `rcc run`'s hot path, stdlib os only): the per-session review directory under
  rcc's state dir (reviews/ID: upper, work, meta.json), mounting the overlay in a private mount namespace just
  before bwrap is exec'd, and removing a layer the session left empty.
- rcc.workspace.layer (effects): loading reviews, the manifest written when a session ends, scanning the upper
  directory, applying Changes to the project through no-follow writes, discarding.
- rcc.workspace.cli: `rcc review`, `rcc apply`, `rcc discard`.
"""
