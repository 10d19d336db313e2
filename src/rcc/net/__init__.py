"""rcc's network door: the sandbox's only way out is this egress proxy.

How the parts fit:
    hosts.py     normalise names and IP literals (IDNA, case, trailing dot, inet_aton spellings); split authorities
    rules.py     parse allow/deny entries and presets -> Rules; decide(rules, host, port) -> Decision (pure);
                 check_address() judges a resolved address (loopback, metadata, the host's own, ...)
    http1.py     sans-IO: an HTTP/1.1 proxy request head -> Connect | Forward | Reject   (RFC 9110/9112)
    socks5.py    sans-IO: a SOCKS5 handshake -> Request | Reject                        (RFC 1928/1929)
    tls.py       sans-IO: the SNI of a tunnel's first TLS ClientHello (domain-fronting guard) (RFC 8446/6066)
    decider.py   the decision point the flow asks (Decider protocol; RuleDecider: compiled Rules, replaceable)
    flow.py      sans-IO: one connection's flow, handshake event -> decide/resolve/connect/reply/audit commands
    proxy.py     EgressProxy: the server, the only module with sockets. asyncio in a background thread; executes
                 the flow's commands
    relay.py     byte relays for established tunnels (large shared buffer copy; splice for comparison)
    notices.py   rate-limited denial lines for the terminal, chosen by the Decision's kind
    audit.py     AuditRecord JSON lines, appended with rotation; read_records() for `rcc log`
    auditbudget.py  the per-session budget in front of the log (summaries past it)
    hostaddrs.py this host's own addresses from /proc
    env.py       proxy_env(port): the variables that point tools inside the sandbox at the proxy
    logcmd.py    `rcc log`

The sandbox's network namespace has only loopback; rcc (not this package) creates a listening socket inside it
and hands it to EgressProxy.start(). If the proxy stops, the sandbox has no network at all.
"""
