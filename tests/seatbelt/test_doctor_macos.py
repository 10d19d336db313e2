"""`rcc doctor` on macOS, from hand-built Facts (no Mac here): the version check, the absolute sandbox-exec."""

from __future__ import annotations

import dataclasses

from rcc.commands import doctor
from rcc.commands.doctor import Facts, checks

MAC = Facts(
    system="darwin",
    os_version="15.1",
    backend="seatbelt",
    binaries=(("sandbox-exec", "/usr/bin/sandbox-exec"), ("pfctl", "/sbin/pfctl")),
)


def by_id(f: Facts) -> dict[str, doctor.Check]:
    return {c.id: c for c in checks(f)}


def test_supported_mac_passes() -> None:
    r = by_id(MAC)
    assert r["macos"].status == "ok" and r["sandbox-exec"].status == "ok"
    assert "backend" not in r and "bubblewrap" not in r
    assert r["limits"].status == "info" and "not enforced" in r["limits"].summary
    assert doctor.passed(list(r.values()))


def test_untested_macos_version_is_a_warning_not_a_failure() -> None:
    r = by_id(dataclasses.replace(MAC, os_version="13.6"))
    assert r["macos"].status == "warn" and "docs/macos.md" in r["macos"].fix
    assert doctor.passed(list(r.values()))


def test_other_sandbox_exec_first_on_path_is_named() -> None:
    r = by_id(dataclasses.replace(MAC, binaries=(("sandbox-exec", "/opt/evil/sandbox-exec"),)))
    assert r["sandbox-exec"].status == "warn" and "/usr/bin/sandbox-exec only" in r["sandbox-exec"].summary


def test_non_default_backend_is_reported() -> None:
    assert by_id(dataclasses.replace(MAC, backend="podman"))["backend"].status == "info"
