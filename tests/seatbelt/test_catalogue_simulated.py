"""The shared attack catalogue (tests/attacks.py: FILE_PROBES, NET_PROBES — the probes the real escape suite runs
against bwrap, podman and docker) run through the Seatbelt decision simulator, for a plain run, --no-network and
every agent profile.

Each probe becomes the Seatbelt operations it performs (a read is file-read-data on the resolved path, a create
is file-write-create on it and on its parent, a connect is network-outbound to the address, ...), evaluated on
the profile rcc renders for the Mac world in sb_world.py: home /Users/u, project /Users/u/proj, the catalogue's
"outside" directory at /Users/Shared/rcc-outside. The expected outcome is the catalogue's, translated:
"private" becomes "denied" (Seatbelt has no private copies of the home or /tmp: the session's own HOME and
TMPDIR live elsewhere, and the host's are refused), and SEATBELT_DIFFERS lists, with the reason, every probe
whose outcome differs on macOS or that has no macOS counterpart. A probe added to the catalogue that this
module does not know how to translate fails the test, so it is never silently left out.

What this proves and does not: the same as test_simulated_escapes.py (the simulator's stated semantics, not
the real macOS; the macOS release workflow runs the real suite).
"""

from __future__ import annotations

import os

import pytest
import sb_world
from sb_simulator import Profile, Request

from attacks import FILE_PROBES, NET_PROBES, Probe, resolve
from rcc.backends.seatbelt_profile import canonical

HOME, PROJECT, OUTSIDE = sb_world.HOME, sb_world.PROJECT, "/Users/Shared/rcc-outside"
HOST_LOOPBACK_PORT = "5432"
SKIP = "skip"

# probe name -> (the outcome on Seatbelt, or SKIP, and why)
SEATBELT_DIFFERS: dict[str, tuple[str, str]] = {
    "serve-own-loopback": ("denied", "no private loopback on macOS: binding the host's loopback needs --publish"),
    "interfaces-beyond-lo": (SKIP, "no network namespace: the host's interfaces are visible, reaching them is not"),
    "interfaces-beyond-lo-with-proxy": (SKIP, "as above"),
    "connect-host-abstract-socket": (SKIP, "macOS has no abstract unix sockets"),
    "create-/rcc-escape-test": ("denied", "no fresh root directory: the host's / is read-only"),
    "read-/etc/hostname": ("allowed", "the system is readable (macOS has no /etc/hostname; any /private/etc file)"),
}
# Linux paths with a different macOS counterpart
TRANSLATE = {"/home": "/Users", "/run/": "/private/var/run/"}  # /dev/shm: none on macOS, not writable


def _path(probe: Probe) -> str:
    p = resolve(
        probe.target,
        home=HOME,
        project=PROJECT,
        outside=OUTSIDE,
        tag="t",
        uid="501",
        host_loopback=HOST_LOOPBACK_PORT,
        host_unix="/private/tmp/rcc-host-agent.sock",
        host_abstract="x",
    )
    for linux, mac in TRANSLATE.items():
        if p == linux or p.startswith(linux):
            p = mac + p[len(linux) :]
    return canonical(p) if p.startswith("/") else p


def requests(probe: Probe) -> list[Request]:
    """The Seatbelt operations the probe needs (it succeeds only if every one is allowed)."""
    if probe.op in ("connect", "connect-unix", "serve-loopback"):
        target = _path(probe)
        if probe.op == "connect-unix":
            return [Request("network-outbound", addr="unix:" + target)]
        if probe.op == "serve-loopback":
            return [Request("network-bind", addr="127.0.0.1:0"), Request("network-inbound", addr="127.0.0.1:0")]
        host, _, port = target.rpartition(":")
        if port == "3128":  # the proxy: on macOS it listens on the host's loopback at its own port
            port = str(sb_world.PORT)
        return [Request("network-outbound", addr=f"{host}:{port}")]
    path = _path(probe)
    if probe.op == "read":
        return [Request("file-read-data", path)]
    if probe.op == "list":
        return [Request("file-read-data", path.rstrip("/") or "/")]
    if probe.op == "write":
        return [Request("file-write-data", path)]
    if probe.op == "create":
        return [Request("file-write-create", path)]
    if probe.op == "create-parents":
        return [Request("file-write-create", os.path.dirname(path)), Request("file-write-create", path)]
    raise AssertionError(f"no Seatbelt translation for op {probe.op!r} ({probe.name}): add one")


def expected(probe: Probe) -> str:
    if probe.name in SEATBELT_DIFFERS:
        return SEATBELT_DIFFERS[probe.name][0]
    return "denied" if probe.expect == "private" else probe.expect


def _mode(kind: str) -> str:
    return "none" if kind == "no-network" else "proxy"


def _probes(kind: str) -> list[Probe]:
    out = list(FILE_PROBES)
    for p in NET_PROBES:
        # every attack runs in both modes (the profile differs); controls and mode-specific probes in theirs
        if p.mode == _mode(kind) or (p.expect == "denied" and p.name != "connect-proxy-without-network"):
            out.append(p)
    return out


@pytest.mark.parametrize("kind", sb_world.KINDS)
def test_catalogue_probes_through_the_simulator(kind: str) -> None:
    prof = Profile(sb_world.profile(kind))
    wrong = []
    ran = 0
    for probe in _probes(kind):
        want = expected(probe)
        if want == SKIP:
            continue
        reqs = requests(probe)
        got = "allowed" if all(prof.allows(r) for r in reqs) else "denied"
        ran += 1
        if got != want:
            wrong.append((probe.name, want, got, [(r.op, r.path or r.addr, prof.decide(r)[1]) for r in reqs]))
    assert wrong == [], f"{kind}: {wrong}"
    assert ran >= len(FILE_PROBES)


def test_every_catalogue_probe_has_a_translation_or_a_stated_difference() -> None:
    for probe in (*FILE_PROBES, *NET_PROBES):
        if expected(probe) != SKIP:
            assert requests(probe), probe.name
    for name, (_outcome, why) in SEATBELT_DIFFERS.items():
        assert why and any(p.name == name for p in (*FILE_PROBES, *NET_PROBES)), f"stale difference: {name}"
