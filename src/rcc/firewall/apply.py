"""The privileged part of rcc: validate a rendered ruleset, apply it, record it; remove exactly that.

Invariants (this is the only code in rcc that runs as root; keep it small and distrustful):
1. Nothing here builds rules. The text comes from nft.render_nft(); check_ruleset() refuses any text that
   touches anything but `table inet rcc` (another table, `flush ruleset`, an include), then `nft -c` must
   accept it, then one `nft -f -` applies it: one transaction, all or nothing.
2. Files are written only at fixed paths under `root` (normally "/"), atomically (temp file + rename), and
   removed only when they carry rcc's marker, so `--uninstall` removes exactly what rcc added.
3. Every external command is an argv list; `nft` may be prefixed (tests run it as
   `ip netns exec <test-ns> nft` so they never touch the machine's own ruleset).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass

from rcc.errors import ExitCode, RccError
from rcc.firewall import nft
from rcc.firewall.spec import FirewallSpec

MARKER = "rcc-firewall"  # appears in every file rcc writes here; uninstall removes only files containing it
UNIT_NAME = "rcc-firewall.service"

# Top-level statements a rendered ruleset may contain: exactly these, nothing else.
_ALLOWED_TOP = (
    f"table {nft.TABLE_FAMILY} {nft.TABLE_NAME}",
    f"delete table {nft.TABLE_FAMILY} {nft.TABLE_NAME}",
    f"table {nft.TABLE_FAMILY} {nft.TABLE_NAME} {{",
)
# Inside the table: no statement that reaches outside it or reads files.
_FORBIDDEN_INNER = re.compile(r"\b(include|ruleset|define|table)\b")
_QUOTED = re.compile(r'"[^"\n]*"')


@dataclass(frozen=True)
class FirewallPaths:
    """Where the installed firewall lives. `root` is "/" except in tests and image builds (`--root`)."""

    root: str = "/"

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def etc_dir(self) -> str:
        return self._p("etc", "rcc")

    @property
    def ruleset(self) -> str:
        return self._p("etc", "rcc", "firewall.nft")

    @property
    def unit(self) -> str:
        return self._p("etc", "systemd", "system", UNIT_NAME)

    @property
    def unit_link(self) -> str:
        return self._p("etc", "systemd", "system", "multi-user.target.wants", UNIT_NAME)


@dataclass(frozen=True)
class Nft:
    """How to run nft. `prefix` is ("nft",) on a host; ("ip", "netns", "exec", NS, "nft") in tests."""

    prefix: tuple[str, ...] = ("nft",)

    def run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [*self.prefix, *args],
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
                env={**os.environ, "LC_ALL": "C"},  # loaded_table() recognises nft's (strerror) message
            )
        except FileNotFoundError:
            raise RccError(
                f"{self.prefix[0]} is not installed",
                hint="install nftables (Debian/Ubuntu: sudo apt install nftables)",
                code=ExitCode.DEPENDENCY,
            ) from None


def check_ruleset(text: str) -> None:
    """Refuse a ruleset that would touch anything but rcc's own table (defence against a renderer bug)."""
    depth = 0
    for n, raw in enumerate(text.splitlines(), 1):
        # Quoted strings (comments, interface names) cannot change structure; look at the rest.
        line = _QUOTED.sub('""', raw).split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0:
            if line not in _ALLOWED_TOP:
                raise RccError(f"refusing to apply ruleset: line {n} is outside table inet rcc: {raw!r}")
        elif _FORBIDDEN_INNER.search(line):
            raise RccError(f"refusing to apply ruleset: line {n} reaches outside the table: {raw!r}")
        depth += line.count("{") - line.count("}")
        if depth < 0:
            raise RccError(f"refusing to apply ruleset: unbalanced braces at line {n}")
    if depth != 0:
        raise RccError("refusing to apply ruleset: unbalanced braces")


def apply_ruleset(text: str, runner: Nft) -> None:
    """Validate and apply atomically. Raises RccError (nothing applied) if nft rejects it."""
    check_ruleset(text)
    for args in (["-c", "-f", "-"], ["-f", "-"]):
        r = runner.run(args, stdin=text)
        if r.returncode != 0:
            raise RccError(
                f"nft {' '.join(args)} failed: {r.stderr.strip() or r.stdout.strip()}",
                hint="nothing was changed; `rcc doctor` checks nftables",
                code=ExitCode.SETUP,
            )


def remove_table(runner: Nft) -> bool:
    """Delete table inet rcc if loaded. Returns whether it was loaded."""
    if loaded_table(runner) is None:
        return False
    r = runner.run(["-f", "-"], stdin=nft.render_delete())
    if r.returncode != 0:
        raise RccError(f"nft could not delete table inet rcc: {r.stderr.strip()}", code=ExitCode.SETUP)
    return True


def loaded_table(runner: Nft) -> dict[str, object] | None:
    """The loaded table as nft's JSON objects, or None when it is not loaded. Needs CAP_NET_ADMIN."""
    r = runner.run(["-j", "list", "table", nft.TABLE_FAMILY, nft.TABLE_NAME])
    if r.returncode != 0:
        if "No such file or directory" in r.stderr:
            return None
        raise RccError(
            f"nft cannot list table inet rcc: {r.stderr.strip()}",
            hint="listing the ruleset needs root: sudo rcc doctor",
            code=ExitCode.SETUP,
        )
    doc = json.loads(r.stdout)
    return {"nftables": doc.get("nftables", [])}


def loaded_is_current(loaded: dict[str, object], spec: FirewallSpec, listing: str) -> bool:
    """Whether a loaded table is what render_nft(spec) defines: the digest in its comment (nft's text
    listing) and the number of rules in each chain (so a hand-deleted rule shows up)."""
    if f'comment "{nft.table_comment(spec)}"' not in listing:
        return False
    counts: dict[str, int] = {}
    items = loaded.get("nftables", [])
    for item in items if isinstance(items, list) else []:
        if "chain" in item:
            counts.setdefault(item["chain"]["name"], 0)
        elif "rule" in item:
            counts[item["rule"]["chain"]] = counts.get(item["rule"]["chain"], 0) + 1
    return counts == nft.rule_counts(spec)


def table_listing(runner: Nft) -> str:
    r = runner.run(["list", "table", nft.TABLE_FAMILY, nft.TABLE_NAME])
    return r.stdout if r.returncode == 0 else ""


def counters(runner: Nft) -> dict[str, int]:
    """Packets dropped so far, by counter name (empty when the table is not loaded)."""
    table = loaded_table(runner)
    out: dict[str, int] = {}
    items = table.get("nftables", []) if table else []
    for item in items if isinstance(items, list) else []:
        if "counter" in item:
            out[item["counter"]["name"]] = int(item["counter"].get("packets", 0))
    return out


def render_unit(nft_path: str, ruleset_path: str) -> str:
    """The systemd unit that loads the installed ruleset at boot (written only with --persist)."""
    return f"""\
# {MARKER}: written by `sudo rcc setup --firewall --persist`; removed by `sudo rcc setup --firewall --uninstall`.
[Unit]
Description=rcc sandbox firewall (nftables table inet rcc)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
Conflicts=shutdown.target
# nftables.service starts with `flush ruleset`: load after it, and again whenever it is restarted.
After=nftables.service
PartOf=nftables.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={nft_path} -f {ruleset_path}

[Install]
WantedBy=multi-user.target
"""


def write_file(path: str, content: str, mode: int = 0o644) -> bool:
    """Write atomically; returns False (and writes nothing) when the content is already there."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.rcc-tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return True


def remove_if_ours(path: str) -> bool:
    """Remove `path` only if it is a regular file rcc wrote (it carries MARKER or the spec header)."""
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if MARKER not in text and nft.SPEC_HEADER not in text:
        return False
    os.unlink(path)
    return True


def link_unit(paths: FirewallPaths) -> bool:
    """`systemctl enable`, done by hand so it works offline (image builds) and is exactly reversible."""
    target = os.path.join("..", UNIT_NAME)
    if os.path.islink(paths.unit_link) and os.readlink(paths.unit_link) == target:
        return False
    os.makedirs(os.path.dirname(paths.unit_link), mode=0o755, exist_ok=True)
    if os.path.lexists(paths.unit_link):
        raise RccError(f"{paths.unit_link} exists and is not rcc's link", code=ExitCode.SETUP)
    os.symlink(target, paths.unit_link)
    return True


def unlink_unit(paths: FirewallPaths) -> bool:
    if os.path.islink(paths.unit_link) and os.readlink(paths.unit_link) == os.path.join("..", UNIT_NAME):
        os.unlink(paths.unit_link)
        return True
    return False


def systemd_reload(root: str) -> bool:
    """Tell a running systemd about a changed unit. Not done for another root or without systemd."""
    if root != "/" or not os.path.isdir("/run/systemd/system"):
        return False
    subprocess.run(["systemctl", "daemon-reload"], check=False, capture_output=True, timeout=60)
    return True


def run_pfctl(argvs: list[list[str]]) -> None:
    """Run pfctl commands (rcc.firewall.pf renders them) in order as root; the first failure stops with its
    message (exit code SETUP). macOS; tests use a stand-in pfctl (tests/seatbelt/test_pf_setup.py)."""
    import subprocess

    from rcc.errors import ExitCode, RccError

    for argv in argvs:
        r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        if r.returncode != 0:
            raise RccError(f"{' '.join(argv)} failed: {r.stderr.strip()}", code=ExitCode.SETUP)


# ------------------------------------------------------------------------------------------- state
# What `rcc doctor` reports of the firewall: is the installed file what this rcc renders, is it loaded.


def file_current(text: str, system: str) -> bool:
    """Whether an installed firewall file is exactly what this rcc renders from the spec it records."""
    from rcc.errors import ConfigError
    from rcc.firewall import pf

    try:
        spec = nft.spec_from_rendered(text, "installed firewall")
    except ConfigError:
        return False
    if spec is None:
        return False
    return text == (pf.render_pf(spec) if system == "darwin" else nft.render_nft(spec))


def _pf_anchor_state() -> str:
    """macOS, as root: whether rcc's anchor has rules loaded. (Not run by rcc's tests: they run on Linux.)"""
    from rcc.firewall import pf

    try:
        r = subprocess.run(
            [pf.PFCTL, "-a", pf.ANCHOR, "-s", "rules"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if r.returncode != 0:
        return "unknown"
    return "current" if r.stdout.strip() else "absent"


def loaded_state(f_text: str | None, system: str, euid: int) -> tuple[str, tuple[tuple[str, int], ...]]:
    """("current" | "stale" | "absent" | "unknown", drop counters) of the loaded ruleset against the installed
    file's text (None: not installed). Reading the kernel's table needs root."""
    if f_text is not None and euid == 0 and system == "darwin":
        return _pf_anchor_state(), ()
    if f_text is None or euid != 0 or system != "linux":
        return ("unknown" if f_text is not None else "absent"), ()
    runner = Nft()
    try:
        spec = nft.spec_from_rendered(f_text, "installed firewall")
        loaded = loaded_table(runner)
    except RccError:
        return "unknown", ()
    if loaded is None:
        return "absent", ()
    if spec is None or not loaded_is_current(loaded, spec, table_listing(runner)):
        return "stale", ()
    return "current", tuple(sorted(counters(runner).items()))
