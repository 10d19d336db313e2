"""`rcc setup --firewall` on macOS (pf), run on Linux with a stand-in pfctl that records its argv.

What this proves: the anchor file rcc writes (content, place), the exact pfctl argv lists in order (validate
with -n first, then load into com.apple/rcc, then enable), that a failed validation loads nothing and exits 71,
--uninstall flushes only rcc's anchor and removes only rcc's file, --dry-run runs nothing, and root is
required. What it does NOT prove: that macOS's pf accepts the anchor (the macOS release workflow loads it with
the real pfctl).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rcc.commands.setup import SetupContext, SetupOptions, run
from rcc.errors import ExitCode, RccError
from rcc.firewall import pf
from rcc.firewall.spec import FirewallSpec


def stand_in(tmp: Path, fail_on: str = "") -> tuple[str, Path]:
    log = tmp / "pfctl.log"
    script = tmp / "pfctl"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {log}\n'
        + (f'case "$*" in *"{fail_on}"*) echo "pfctl: syntax error" >&2; exit 1;; esac\n' if fail_on else "")
        + "exit 0\n"
    )
    script.chmod(0o755)
    return str(script), log


def ctx(tmp: Path, pfctl: str, euid: int = 0) -> SetupContext:
    return SetupContext(env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"}, euid=euid, platform="darwin", pfctl=pfctl)


def test_install_writes_the_anchor_and_runs_pfctl_in_order(tmp_path: Path) -> None:
    pfctl, log = stand_in(tmp_path)
    root = tmp_path / "root"
    out = run(SetupOptions(firewall=True, root=str(root)), ctx(tmp_path, pfctl))
    anchor = root / "etc" / "rcc" / "pf.anchor"
    assert anchor.read_text() == pf.render_pf(FirewallSpec())
    assert log.read_text().splitlines() == [
        f"-n -a com.apple/rcc -f {anchor}",
        f"-a com.apple/rcc -f {anchor}",
        "-E",
    ]
    assert any("loaded   pf anchor com.apple/rcc" in line for line in out)


def test_failed_validation_loads_nothing(tmp_path: Path) -> None:
    pfctl, log = stand_in(tmp_path, fail_on="-n ")
    with pytest.raises(RccError) as e:
        run(SetupOptions(firewall=True, root=str(tmp_path / "root")), ctx(tmp_path, pfctl))
    assert e.value.code == ExitCode.SETUP and "syntax error" in e.value.message
    assert len(log.read_text().splitlines()) == 1  # only the validation ran


def test_uninstall_flushes_only_rccs_anchor_and_file(tmp_path: Path) -> None:
    pfctl, log = stand_in(tmp_path)
    root = tmp_path / "root"
    run(SetupOptions(firewall=True, root=str(root)), ctx(tmp_path, pfctl))
    log.unlink()
    out = run(SetupOptions(firewall=True, uninstall=True, root=str(root)), ctx(tmp_path, pfctl))
    assert log.read_text().splitlines() == ["-a com.apple/rcc -F all"]
    assert not (root / "etc" / "rcc" / "pf.anchor").exists()
    assert any("flushed" in line for line in out)


def test_uninstall_keeps_a_file_rcc_did_not_write(tmp_path: Path) -> None:
    pfctl, _ = stand_in(tmp_path)
    anchor = tmp_path / "root" / "etc" / "rcc" / "pf.anchor"
    anchor.parent.mkdir(parents=True)
    anchor.write_text("# the admin's own rules\n")
    run(SetupOptions(firewall=True, uninstall=True, root=str(tmp_path / "root")), ctx(tmp_path, pfctl))
    assert anchor.read_text() == "# the admin's own rules\n"


def test_dry_run_runs_nothing_and_shows_the_commands(tmp_path: Path) -> None:
    pfctl, log = stand_in(tmp_path)
    out = "\n".join(run(SetupOptions(firewall=True, dry_run=True), ctx(tmp_path, pfctl, euid=501)))
    assert f"# then: {pfctl} -a com.apple/rcc -f /etc/rcc/pf.anchor" in out
    out = "\n".join(run(SetupOptions(firewall=True, uninstall=True, dry_run=True), ctx(tmp_path, pfctl, euid=501)))
    assert f"{pfctl} -a com.apple/rcc -F all" in out
    assert not log.exists()


def test_needs_root(tmp_path: Path) -> None:
    pfctl, log = stand_in(tmp_path)
    for opts in (SetupOptions(firewall=True), SetupOptions(firewall=True, uninstall=True)):
        with pytest.raises(RccError) as e:
            run(opts, ctx(tmp_path, pfctl, euid=501))
        assert e.value.code == ExitCode.SETUP
    assert not log.exists()


def test_real_pfctl_is_named_by_absolute_path() -> None:
    assert all(os.path.isabs(a[0]) for a in [*pf.load_argv("/x"), *pf.unload_argv()])
