"""`sudo rcc setup --firewall [--persist] [--dry-run] [--uninstall]`: the privileged part of `rcc setup`.

rcc's kernel firewall (defence in depth, see rcc.firewall): the only privileged code in rcc. Render (pure,
rcc.firewall.nft/pf), validate, apply atomically (rcc.firewall.apply: `nft -f -`, pfctl), record. Without root it
stops and says the exact command to run; rcc never runs sudo itself.
"""

from __future__ import annotations

import os

from rcc.errors import ExitCode, RccError
from rcc.paths import self_command

TYPE_CHECKING = False  # typing stays out of the import chain
if TYPE_CHECKING:
    from rcc.commands.setup import SetupContext, SetupOptions  # annotations only: setup imports this module
    from rcc.firewall.spec import FirewallSpec


def _spec(opts: SetupOptions) -> FirewallSpec:
    from rcc.firewall.spec import FirewallSpec

    return FirewallSpec(proxy_ports=opts.proxy_ports) if opts.proxy_ports else FirewallSpec()


# Where `sudo` looks for commands (Debian's and Ubuntu's secure_path; Fedora's and Arch's are subsets of it).
def _require_root(ctx: SetupContext, what: str) -> None:
    if ctx.euid != 0:
        raise RccError(
            f"{what} needs root",
            hint=f"run `sudo {self_command(ctx.env)} {what}` (rcc never runs sudo itself); "
            f"`rcc {what} --dry-run` shows what it would do",
            code=ExitCode.SETUP,
        )


def install_firewall(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    if ctx.platform == "darwin":
        return _install_pf(opts, ctx)
    if not ctx.platform.startswith("linux"):
        raise RccError(f"rcc's firewall supports Linux (nftables) and macOS (pf), not {ctx.platform}")
    from rcc.firewall import apply, nft

    spec = _spec(opts)
    text = nft.render_nft(spec)
    fp = apply.FirewallPaths(opts.root)
    unit = apply.render_unit(_nft_path(), "/etc/rcc/firewall.nft") if opts.persist else None

    if opts.dry_run:
        plan = [f"# would apply with `nft -f -` (after `nft -c -f -` accepts it), and write {fp.ruleset}:", text]
        if unit is not None:
            plan += [f"# would write {fp.unit} and link {fp.unit_link}:", unit]
        return plan

    _require_root(ctx, "setup --firewall")
    runner = apply.Nft(ctx.nft_prefix)
    out: list[str] = []
    loaded = apply.loaded_table(runner)
    if loaded is not None and apply.loaded_is_current(loaded, spec, apply.table_listing(runner)):
        out.append("ok       nftables table inet rcc is loaded and current")
    else:
        apply.apply_ruleset(text, runner)
        out.append(("replaced" if loaded is not None else "loaded  ") + " nftables table inet rcc (one transaction)")
    out.append(_file_line(apply.write_file(fp.ruleset, text), fp.ruleset))
    if unit is not None:
        out.append(_file_line(apply.write_file(fp.unit, unit), fp.unit))
        out.append(_file_line(apply.link_unit(fp), fp.unit_link))
        if apply.systemd_reload(opts.root):
            out.append("ran      systemctl daemon-reload")
    out.append("remove with: sudo rcc setup --firewall --uninstall")
    return out


def uninstall_firewall(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    if ctx.platform == "darwin":
        return _uninstall_pf(opts, ctx)
    from rcc.firewall import apply

    fp = apply.FirewallPaths(opts.root)
    files = [p for p in (fp.unit_link, fp.unit, fp.ruleset) if os.path.lexists(p)]
    if opts.dry_run:
        return [
            "would delete nftables table inet rcc (if loaded), and nothing else in the ruleset",
            *(f"would remove {p} (if rcc wrote it)" for p in files),
        ]
    _require_root(ctx, "setup --firewall --uninstall")
    runner = apply.Nft(ctx.nft_prefix)
    out = ["deleted  nftables table inet rcc" if apply.remove_table(runner) else "ok       table inet rcc not loaded"]
    if apply.unlink_unit(fp):
        out.append(f"removed  {fp.unit_link}")
    for p in (fp.unit, fp.ruleset):
        if apply.remove_if_ours(p):
            out.append(f"removed  {p}")
        elif os.path.lexists(p):
            out.append(f"kept     {p} (not written by rcc)")
    if os.path.isdir(fp.etc_dir) and not os.listdir(fp.etc_dir):
        os.rmdir(fp.etc_dir)
        out.append(f"removed  {fp.etc_dir} (empty)")
    if apply.systemd_reload(opts.root):
        out.append("ran      systemctl daemon-reload")
    return out


def _file_line(changed: bool, path: str) -> str:
    return f"wrote    {path}" if changed else f"ok       {path} (current)"


def _nft_path() -> str:
    import shutil

    return shutil.which("nft") or "/usr/sbin/nft"


def _pf_file(opts: SetupOptions) -> str:
    return os.path.join(opts.root, "etc", "rcc", "pf.anchor")


def _install_pf(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    """macOS. Tested on Linux with a stand-in pfctl (tests/seatbelt/test_pf_setup.py); the real pfctl runs in the
    macOS release workflow."""
    from rcc.firewall import apply, pf

    spec = _spec(opts)
    text, path = pf.render_pf(spec), _pf_file(opts)
    if opts.dry_run:
        cmds = ["# then: " + " ".join(a) for a in pf.load_argv(path, ctx.pfctl)]
        return [f"# would write {path}:", text, *cmds]
    if opts.persist:
        raise RccError("--persist is not implemented on macOS yet", code=ExitCode.USAGE)
    _require_root(ctx, "setup --firewall")
    changed = apply.write_file(path, text)
    apply.run_pfctl(pf.load_argv(path, ctx.pfctl))
    return [_file_line(changed, path), f"loaded   pf anchor {pf.ANCHOR}"]


def _uninstall_pf(opts: SetupOptions, ctx: SetupContext) -> list[str]:
    from rcc.firewall import apply, pf

    path = _pf_file(opts)
    if opts.dry_run:
        return [
            f"would flush pf anchor {pf.ANCHOR}: " + " ".join(pf.unload_argv(ctx.pfctl)[0]),
            f"would remove {path} (if rcc wrote it)",
        ]
    _require_root(ctx, "setup --firewall --uninstall")
    apply.run_pfctl(pf.unload_argv(ctx.pfctl))
    out = [f"flushed  pf anchor {pf.ANCHOR}"]
    if apply.remove_if_ours(path):
        out.append(f"removed  {path}")
    return out
