"""Backends execute a Plan. resolve() says which one was chosen and why, so `rcc doctor` can repeat it."""

from __future__ import annotations

from rcc.errors import ExitCode, RccError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rcc.backends._base import Backend


def resolve(name: str, image: str | None = None) -> tuple[Backend, str]:
    if name == "bwrap":
        from rcc.backends.bwrap import BwrapBackend

        return BwrapBackend(), "bwrap: the default on Linux"
    if name == "seatbelt":
        import sys

        from rcc.backends.seatbelt import SeatbeltBackend

        why = "the default on macOS" if sys.platform == "darwin" else "chosen by policy (backend = 'seatbelt')"
        return SeatbeltBackend(), f"seatbelt: {why}"
    if name in ("podman", "docker"):
        try:
            from rcc.backends.container import ContainerBackend
        except ImportError as e:
            raise RccError(f"the {name} backend is not available in this build", code=ExitCode.DEPENDENCY) from e
        return ContainerBackend(name, image), f"{name}: chosen by policy (backend = {name!r})"
    raise RccError(f"unknown backend {name!r}", code=ExitCode.CONFIG)
