"""rcc: run an AI coding agent (or any command) so that it can work on one project and nothing else.

How the parts fit (pure core, thin effectful edges):

    config.py   TOML files + flags  -> Policy (frozen, validated, with provenance; trust gates the project file)
    probe.py    looks at the disk once -> HostFacts (home, uid, which paths exist, protected paths' state)
    compile.py  Policy + HostFacts -> Plan (typed mount/env/namespace/network operations; pure)
    backends/   execute a Plan: bwrap.py (Linux, default), container.py (podman/docker)
    net/        the egress proxy: pure rules/decide(), sans-IO HTTP/SOCKS5 parsers, one socket-owning server,
                the audit log
    keys.py     the one description of config keys and `rcc run` options (parsing, merging, flags, completions)
    commands/   the command table and the commands that are not a session (doctor, setup, policy, trust, ...)
    cli.py      dispatches argv, and is the one place that prints errors and exits

The layers and what each module may import: docs/architecture.md (tests/core/test_architecture.py holds it).

Nothing in the core mutates module-level state; tests build Policy/HostFacts values directly.
"""

__version__ = "0.1.0"
