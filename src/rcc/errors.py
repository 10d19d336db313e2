"""rcc's own failures: one exception type carrying a message, a hint and a distinct exit code.

The sandboxed command's exit status is passed through unchanged, so rcc's codes follow sysexits(3), which
ordinary commands rarely use; 126/127 keep their shell meaning (found but not executable / not found).
"""

from __future__ import annotations


class ExitCode:
    """Plain int constants (an IntEnum would cost `rcc run` an `enum` import)."""

    OK = 0
    USAGE = 64  # bad command line (unknown flag, missing command)
    PROJECT = 66  # the project directory does not exist or is unsafe to mount
    DEPENDENCY = 69  # a program rcc needs is missing (bubblewrap, the agent, podman)
    INTERNAL = 70  # a bug in rcc
    SETUP = 71  # the machine needs setup first (user namespaces blocked, AppArmor, ...)
    UNSAFE_PATH = 73  # a path rcc writes on the host has a symlink or non-directory in it (rcc.hostfs)
    APPLY_REFUSED = 65  # rcc apply: some changes were refused or in conflict (the others were applied)
    NO_REVIEW = 67  # rcc review/apply/discard: no pending review matches
    REVIEW_UNAVAILABLE = 72  # review mode asked for, but the layer cannot be made here: nothing ran
    NO_SESSION = 75  # rcc allow/deny: no running session matches, or it cannot be reached (rcc.live)
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127
    CONFIG = 78  # invalid config file, invalid policy value, untrusted content that was required


class RccError(Exception):
    """An error the user can act on. `hint` says how to fix it."""

    def __init__(self, message: str, *, hint: str = "", code: int = ExitCode.INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class UsageError(RccError):
    def __init__(self, message: str, hint: str = "run `rcc --help`") -> None:
        super().__init__(message, hint=hint, code=ExitCode.USAGE)


class ConfigError(RccError):
    """An invalid config value. `where` is "file:line" (or "--flag"), `key` the dotted key."""

    def __init__(self, where: str, key: str, problem: str, hint: str = "") -> None:
        loc = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(loc + problem, hint=hint, code=ExitCode.CONFIG)
        self.where = where
        self.key = key
