"""Pure tests of the Seatbelt profile renderer: golden profiles, a structural check of every generated profile,
and the rules that keep strings and paths expressible.

What this proves: the profile text rcc would hand to sandbox-exec, for representative plans, is exactly the
reviewed one (tests/seatbelt/golden/*.sb); it reads as an S-expression in the SBPL subset rcc uses, names only
known operations and filters, allows no forbidden operation, `ip` hosts are only `localhost`, strings fit
Seatbelt's limit and regexes compile. What it does NOT prove: that macOS accepts and enforces it (only the
macOS release workflow, .github/workflows/macos.yml, runs it under the real sandbox-exec).

Regenerate the golden files after an intended change with RCC_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os

import pytest
import sb_world
import sbpl
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rcc.backends.seatbelt_profile import MAX_STRING, canonical, layout_for, quote, render_profile
from rcc.errors import ExitCode, RccError
from rcc.plan import Bind, Mask
from rcc.record import replace

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def golden(name: str, text: str) -> None:
    path = os.path.join(GOLDEN, name)
    if os.environ.get("RCC_UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"{name} changed; RCC_UPDATE_GOLDEN=1 regenerates it"


@pytest.mark.parametrize("kind", ["default", "no-network", "extra", "agent-claude"])
def test_golden_profile(kind: str) -> None:
    golden(f"{kind}.sb", sb_world.profile(kind))


@pytest.mark.parametrize("kind", sb_world.KINDS)
def test_every_generated_profile_passes_the_structural_check(kind: str) -> None:
    assert sbpl.check(sb_world.profile(kind)) == []


def test_structural_check_catches_what_it_claims() -> None:
    """The checker itself: each forbidden construct is reported (else a passing check would prove nothing)."""
    ok = sb_world.profile("default")
    assert sbpl.check(ok) == []
    bad = {
        "(allow lsopen)": "allows lsopen",
        "(allow appleevent-send)": "allows appleevent-send",
        '(allow file-link (subpath "/Users/u/proj"))': "allows file-link",
        "(allow process-exec (with no-sandbox))": "no-sandbox",
        '(allow network-outbound (remote ip "127.0.0.1:*"))': "localhost or *",
        '(allow network-outbound (remote ip "*:*"))': "allows every host",
        "(allow network-outbound)": "allows all network",
        "(allow network-bind)": "allows all network",
        '(allow network-outbound (local ip "localhost:*"))': "only on network-bind",
        '(allow network-bind (local ip "*:8080"))': "local ip must be localhost",
        '(allow mach-lookup (global-name "com.apple.SecurityServer"))': "forbidden mach",
        "(allow mach-lookup)": "every mach service",
        '(allow file-read* (regex #"[unclosed"))': "does not compile",
        '(allow file-read* (subpath "/tmp/x"))': "/private/tmp",
        '(allow file-read* (subpath "/a//b"))': "non-canonical",
        '(allow file-read* (subpath "/a/./b"))': "non-canonical",
        "(allow file-teleport)": "unknown operation",
        f'(allow file-read* (literal "/{"a" * MAX_STRING}"))': "longer than",
        '(allow network-outbound (remote unix-socket "/var/run/docker.sock"))': "no unix socket",
        "(allow signal (target others))": "same-sandbox",
    }
    for rule, expected in bad.items():
        problems = sbpl.check(ok + rule + "\n")
        assert any(expected in p for p in problems), (rule, problems)
    assert sbpl.check("(version 1)(allow default)") != []
    assert any("unbalanced" in p for p in sbpl.check(ok + "(allow file-read*"))


def test_profile_has_deny_default_first_and_no_network_rule_without_network() -> None:
    text = sb_world.profile("no-network")
    rules = sbpl.rules(sbpl.parse(text))
    assert rules[0].action == "deny" and rules[0].ops == ("default",)
    assert not any("network-outbound" in r.ops for r in rules)
    assert '(remote ip "localhost:50123")' in sb_world.profile("default")


def test_canonical_paths() -> None:
    assert canonical("/tmp/x") == "/private/tmp/x"
    assert canonical("/var/folders/ab") == "/private/var/folders/ab"
    assert canonical("/etc") == "/private/etc"
    assert canonical("/private/tmp") == "/private/tmp"
    assert canonical("/a//b/./c/") == "/a/b/c"
    assert canonical("/tmpfoo") == "/tmpfoo"
    for bad in ("relative", "/a/../b", "/a\nb", "/" + "x" * MAX_STRING):
        with pytest.raises(RccError) as e:
            canonical(bad)
        assert e.value.code == ExitCode.CONFIG


def test_path_too_long_for_seatbelt_is_an_error_not_a_missing_rule() -> None:
    p = sb_world.plan("default")
    long_dir = "/Users/u/" + "d" * (MAX_STRING - 5)
    p = replace(p, mounts=(*p.mounts, Bind(long_dir, long_dir, False, "test")))
    with pytest.raises(RccError) as e:
        render_profile(p, sb_world.layout(p))
    assert e.value.code == ExitCode.CONFIG


@given(st.text(min_size=1, max_size=60))
@settings(max_examples=300)
def test_any_path_is_quoted_so_it_reads_back_unchanged(name: str) -> None:
    """A hostile project name (quotes, backslashes, parentheses, `;`) cannot end the string and add rules."""
    path = "/Users/u/" + name
    try:
        c = canonical(path)
    except RccError:
        return  # refused (control characters, '..'): never rendered
    forms = sbpl.parse(f"(allow file-read* (subpath {quote(c)}))")
    assert forms == [[sbpl.Sym("allow"), sbpl.Sym("file-read*"), [sbpl.Sym("subpath"), c]]]


def test_project_name_with_quotes_renders_one_rule_per_form() -> None:
    p = sb_world.plan("default")
    evil = '/Users/u/x") (allow default) ("'
    p = replace(p, mounts=(*p.mounts, Bind(evil, evil, True, "test")))
    text = render_profile(p, sb_world.layout(p))
    assert sbpl.check(text) == []
    assert not any(r.action == "allow" and "default" in r.ops for r in sbpl.rules(sbpl.parse(text)))


def test_mask_is_denied_where_the_secret_is_on_the_host() -> None:
    text = sb_world.profile("extra")
    assert '(literal "/Users/u/data/secret.key") (subpath "/Users/u/data/secret.key")' in text
    p = sb_world.plan("extra")
    assert any(isinstance(m, Mask) for m in p.mounts)


def test_layout_lives_in_the_state_dir_and_profile_file_is_denied() -> None:
    p = sb_world.plan("default")
    lay = layout_for(p, "/Users/u/.local/state/rcc", "/Users/u/.config/rcc", 1)
    assert lay.profile == f"/Users/u/.local/state/rcc/seatbelt/{sb_world.SID}/profile.sb"
    text = render_profile(p, lay)
    assert f"(deny file-read* file-write* (literal {quote(lay.profile)})" in text


def test_agent_state_reaches_the_private_home_through_links_and_env() -> None:
    """Seatbelt cannot mount: ~/.claude (a fresh per-session state dir) becomes a link in the session's home,
    ~/.claude/projects (nested: kept per project) a link at its mount point inside that state dir, and
    variables naming the real home name the session's home."""
    from rcc.backends.seatbelt_profile import env_for, home_links

    p = sb_world.plan("agent-claude")
    lay = sb_world.layout(p)
    run = f"{sb_world.STATE}/agents/claude/run/{sb_world.SID}/home/.claude"
    assert home_links(p, lay) == [
        (f"{lay.home}/.cargo/bin", f"{sb_world.HOME}/.cargo/bin"),  # a toolchain, where $HOME/... finds it
        (f"{lay.home}/.claude", run),
        (f"{run}/projects", f"{sb_world.STATE}/agents/claude/projects/k/.claude/projects"),
        (f"{lay.home}/.local/share/claude-install", f"{sb_world.HOME}/.local/share/claude-install"),
    ]
    env = env_for(p, lay)
    assert env["CLAUDE_CONFIG_DIR"] == f"{lay.home}/.claude"
    assert env["HOME"] == lay.home and env["TMPDIR"] == lay.tmp + "/"
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert not any(v.startswith(sb_world.HOME + "/") and "/.local/state/rcc/" not in v for v in env.values())


def test_publish_and_host_services() -> None:
    """--publish PORT: the sandbox's server may bind and accept on the host's loopback at PORT only;
    --host-service PORT: that host loopback port is reachable. Anything Seatbelt cannot express is refused."""
    from sb_simulator import Profile, Request

    from rcc.plan import Publish

    p = sb_world.plan("default")
    p = replace(p, net=replace(p.net, publish=(Publish("127.0.0.1", 8080, 8080),), host_services=(5432,)))
    text = render_profile(p, sb_world.layout(p))
    assert sbpl.check(text) == []
    prof = Profile(text)
    assert prof.allows(Request("network-bind", addr="127.0.0.1:8080"))
    assert prof.allows(Request("network-inbound", addr="127.0.0.1:8080"))
    assert not prof.allows(Request("network-bind", addr="0.0.0.0:8080"))
    assert not prof.allows(Request("network-bind", addr="127.0.0.1:8081"))
    assert not prof.allows(Request("network-outbound", addr="127.0.0.1:8080"))  # binding is not connecting
    assert prof.allows(Request("network-outbound", addr="127.0.0.1:5432"))
    assert not prof.allows(Request("network-outbound", addr="127.0.0.1:5433"))
    for bad in (Publish("0.0.0.0", 8080, 8080), Publish("127.0.0.1", 8080, 80)):
        with pytest.raises(RccError) as e:
            render_profile(replace(p, net=replace(p.net, publish=(bad,))), sb_world.layout(p))
        assert e.value.code == ExitCode.CONFIG


_NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"), min_size=1, max_size=12
)


@given(rw=_NAME, ro=_NAME, secret=_NAME)
@settings(max_examples=150, deadline=None)
def test_random_extra_paths_keep_the_profile_well_formed_and_the_rules_in_force(rw: str, ro: str, secret: str) -> None:
    """Any names for --rw, --ro and --hide (quotes, parentheses, `;`, spaces, non-ASCII): the profile passes the
    structural check, the rw path is writable, the ro path readable but not writable, the secret inside the rw
    path neither readable nor writable, and the project's protected paths stay protected."""
    from sb_simulator import Profile, Request

    from rcc.compile import Session, compile_plan
    from rcc.probe import PathInfo

    assume(rw not in (".", "..") and ro not in (".", "..") and secret not in (".", "..") and rw != ro)
    rw_p, ro_p = f"{sb_world.HOME}/w-{rw}", f"{sb_world.HOME}/r-{ro}"
    secret_p = f"{rw_p}/{secret}"
    paths = {**sb_world.host_paths(), rw_p: PathInfo("dir", rw_p), ro_p: PathInfo("dir", ro_p)}
    paths[secret_p] = PathInfo("file", secret_p)
    facts = replace(sb_world.facts(), paths=paths)
    pol = sb_world._policy(read_write=(rw_p,), read_only=(ro_p,), hide=(secret_p,))
    plan = compile_plan(pol, facts, Session(("true",)), sb_world.SID)
    text = render_profile(plan, sb_world.layout(plan))
    assert sbpl.check(text) == []
    prof = Profile(text)
    assert prof.allows(Request("file-write-create", f"{rw_p}/new"))
    assert prof.allows(Request("file-read-data", f"{ro_p}/f"))
    assert not prof.allows(Request("file-write-create", f"{ro_p}/f"))
    assert not prof.allows(Request("file-read-data", secret_p))
    assert not prof.allows(Request("file-write-create", secret_p))
    assert not prof.allows(Request("file-write-unlink", rw_p))  # the rw root cannot be renamed
    assert not prof.allows(Request("file-write-create", f"{sb_world.PROJECT}/.git/hooks/pre-commit"))
