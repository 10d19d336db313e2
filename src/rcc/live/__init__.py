"""Live network decisions: change a running session's egress policy from another terminal.

How the parts fit:
    protocol.py  sans-IO: the control channel's line-delimited JSON (requests, replies, a bounded line buffer)
    sessions.py  the session registry: one JSON record per running session in rcc's state dir (sessions/ID.json)
    server.py    ControlServer: the running session's side. A unix socket beside its record (sessions/ID.sock,
                 0700 directory, hidden in every sandbox), SO_PEERCRED-checked, no TCP; applies allow/deny to
                 the proxy's RuleDecider (net/decider.py: the seam) and writes an audit record per change
    config_edit.py  `--save`: add a rule to the user's config.toml (never the project's .rcc.toml), verified
    cli.py       `rcc sessions`, `rcc allow`, `rcc deny`: the client side

Only the session (server.py, started by backends/_proxy.py) and these commands import this package; `rcc run`
imports server.py once its proxy is up (stdlib only).
"""
