"""Representative Mac hosts and plans for the Seatbelt tests: built by hand (HostFacts), compiled by the real
compile_plan() and rendered by the real renderer. Pure: nothing is read from or written to this machine.

The host: user `u`, HOME /Users/u, the project /Users/u/proj (a git repository with hooks and config; no
.claude, .mcp.json, ... yet), rustup's toolchain in ~/.cargo/bin, secrets in ~/.ssh and ~/.aws, rcc's state
in ~/.local/state/rcc. The proxy listens on 127.0.0.1:PORT.
"""

from __future__ import annotations

from rcc.backends.seatbelt_profile import Layout, layout_for, render_profile
from rcc.compile import Session, compile_plan
from rcc.config import Contribution, Layer, merge
from rcc.plan import Bind, Plan
from rcc.policy import NetworkPolicy
from rcc.probe import HostFacts, PathInfo
from rcc.record import replace

HOME = "/Users/u"
PROJECT = "/Users/u/proj"
STATE = "/Users/u/.local/state/rcc"
CONFIG = "/Users/u/.config/rcc"
PORT = 50123
SID = "5eed0001"
AGENTS = ("claude", "codex", "gemini", "aider")


def _dir(p: str) -> PathInfo:
    return PathInfo("dir", p)


def _file(p: str) -> PathInfo:
    return PathInfo("file", p)


def host_paths() -> dict[str, PathInfo]:
    paths = {
        "/usr": _dir("/usr"),
        "/bin": _dir("/bin"),
        "/sbin": _dir("/sbin"),
        "/etc": PathInfo("symlink", "/private/etc", True, True, "private/etc"),
        "/opt": _dir("/opt"),
        f"{PROJECT}/.git": _dir(f"{PROJECT}/.git"),
        f"{PROJECT}/.git/hooks": _dir(f"{PROJECT}/.git/hooks"),
        f"{PROJECT}/.git/config": _file(f"{PROJECT}/.git/config"),
        f"{PROJECT}/.git/info": _dir(f"{PROJECT}/.git/info"),
        f"{PROJECT}/.gemini": _dir(f"{PROJECT}/.gemini"),  # exists: other files in it stay writable
        f"{HOME}/.cargo/bin": _dir(f"{HOME}/.cargo/bin"),
        f"{HOME}/.ssh": _dir(f"{HOME}/.ssh"),
        f"{HOME}/.aws": _dir(f"{HOME}/.aws"),
        f"{HOME}/.config/rcc": _dir(CONFIG),
        f"{HOME}/.local/state/rcc": _dir(STATE),
        f"{HOME}/data": _dir(f"{HOME}/data"),
        f"{HOME}/data/secret.key": _file(f"{HOME}/data/secret.key"),
        f"{HOME}/docs": _dir(f"{HOME}/docs"),
        "/etc/shadow": _file("/private/etc/shadow"),
        "/etc/sudoers": _file("/private/etc/sudoers"),
    }
    return paths


def facts() -> HostFacts:
    return HostFacts(
        uid=501,
        gid=20,
        user="u",
        home=HOME,
        home_logical=HOME,
        project=PROJECT,
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", "HOME": HOME, "AWS_SECRET_ACCESS_KEY": "leak", "TERM": "xterm"},
        paths=host_paths(),
    )


def _policy(network: str = "allowlist", **fs: tuple[str, ...]):  # type: ignore[no-untyped-def]
    layer = Layer("test", tuple(Contribution(f"filesystem.{k}", v, "test") for k, v in fs.items()))
    pol = merge([layer], HOME)
    if network == "none":
        pol = replace(pol, network=NetworkPolicy(mode="none"))
    return pol


def agent_session(name: str) -> Session:
    """The session `rcc NAME` builds (rcc.agents.cli.build_session), with the state binds state.prepare()
    would return, made by hand: a fresh per-session state dir mounted at ~/<rel>, per-project dirs, the
    agent's install tree read-only."""
    from rcc.agents.profiles import endpoints, fixed_env, profile

    prof = profile(name)
    run = f"{STATE}/agents/{name}/run/{SID}"
    binds = [Bind(f"{run}/home/{rel}", f"{HOME}/{rel}", True, "agent state") for rel in prof.state]
    binds += [
        Bind(f"{STATE}/agents/{name}/projects/k/{rel}", f"{HOME}/{rel}", True, "per project")
        for rel in prof.project_dirs
    ]
    tree = f"{HOME}/.local/share/{name}-install"
    binds.append(Bind(tree, tree, False, "install tree"))
    env = {"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k", "GEMINI_API_KEY": "k"}
    return Session(
        argv=(f"{tree}/bin/{name}",),
        name=name,
        interactive=True,
        binds=tuple(binds),
        env=fixed_env(prof, HOME),
        allow=endpoints(prof, env),
    )


def plan(kind: str) -> Plan:
    """default | no-network | extra | agent-<name>"""
    f = facts()
    if kind == "default":
        return compile_plan(_policy(), f, Session(("make", "test")), SID)
    if kind == "no-network":
        return compile_plan(_policy("none"), f, Session(("make", "test")), SID)
    if kind == "extra":
        pol = _policy(read_write=(f"{HOME}/data",), read_only=(f"{HOME}/docs",), hide=(f"{HOME}/data/secret.key",))
        return compile_plan(pol, f, Session(("make", "test")), SID)
    if kind.startswith("agent-"):
        return compile_plan(_policy(), f, agent_session(kind[6:]), SID)
    raise ValueError(kind)


def layout(p: Plan) -> Layout:
    return layout_for(p, STATE, CONFIG, PORT)


def profile(kind: str) -> str:
    p = plan(kind)
    return render_profile(p, layout(p))


KINDS = ("default", "no-network", "extra", *(f"agent-{a}" for a in AGENTS))
