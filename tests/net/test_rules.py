"""Pure tests: rule syntax, presets, decide(), check_address(), host normalisation."""

from __future__ import annotations

import ipaddress

import pytest

from rcc.net.hosts import HostError, normalize_host, parse_ipv4_loose, split_authority
from rcc.net.rules import (
    PRESETS,
    Decision,
    RuleError,
    Rules,
    check_address,
    compile_rules,
    decide,
    parse_rule,
    suggest_allow,
)

A = ipaddress.ip_address


def rules(allow: list[str], deny: list[str] | None = None, resolve: dict[str, str] | None = None) -> Rules:
    return compile_rules(allow, deny or [], resolve or {})


# ------------------------------------------------------------------------------------------------ syntax


@pytest.mark.parametrize(
    ("text", "kind", "host", "ports"),
    [
        ("example.com", "name", "example.com", ()),
        ("Example.COM.", "name", "example.com", ()),
        ("example.com:8443", "name", "example.com", (8443,)),
        ("*.example.com", "wildcard", "example.com", ()),
        ("*.example.com:22", "wildcard", "example.com", (22,)),
        ("10.1.2.3", "ip", "10.1.2.3", ()),
        ("10.1.2.3:8080", "ip", "10.1.2.3", (8080,)),
        ("[2001:db8::1]", "ip", "2001:db8::1", ()),
        ("[2001:DB8::1]:443", "ip", "2001:db8::1", (443,)),
        ("0x7f.1", "ip", "127.0.0.1", ()),
        ("[::ffff:10.0.0.1]", "ip", "10.0.0.1", ()),
        ("bücher.example", "name", "xn--bcher-kva.example", ()),
        ("@npm", "preset", "npm", ()),
    ],
)
def test_parse_rule_accepts(text: str, kind: str, host: str, ports: tuple[int, ...]) -> None:
    r = parse_rule(text)
    assert (r.kind, r.host, r.ports) == (kind, host, ports)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("*", "over-broad"),
        ("*.com", "over-broad"),
        ("*.co.uk", "public suffix"),
        ("*.github.io", "public suffix"),
        ("*.amazonaws.com", "public suffix"),
        ("*foo.com", "over-broad"),
        ("foo.*.com", "leftmost"),
        ("*.*.example.com", "one leading"),
        ("2001:db8::1", "brackets"),
        ("[example.com]", "IPv6"),
        ("example.com:0", "port"),
        ("example.com:65536", "port"),
        ("example.com:http", "port"),
        ("http://example.com", "no URL"),
        ("10.0.0.0/8", "no URL or CIDR"),
        ("user@example.com", "no URL"),
        ("@nosuchpreset", "unknown preset"),
        ("", "empty"),
        ("exa mple.com", "whitespace"),
        ("exa\x00mple.com", "control"),
        ("example.com:8\n0", "whitespace"),
        ("exa_-.com", "not a valid host name"),
        ("1.2.3.256", "not an IPv4"),
        ("*.10.0.0", "not IP"),
        ("[fe80::1%eth0]", "zone"),
    ],
)
def test_parse_rule_rejects_naming_the_entry(text: str, words: str) -> None:
    with pytest.raises(RuleError) as e:
        parse_rule(text)
    assert repr(text) in str(e.value)
    assert words.lower() in str(e.value).lower()


def test_compile_rules_names_the_bad_entry_among_good_ones() -> None:
    with pytest.raises(RuleError, match=r"'\*\.co\.uk'"):
        compile_rules(["example.com", "*.co.uk"], [])


def test_resolve_override_must_be_an_address() -> None:
    with pytest.raises(RuleError, match=r"api\.test"):
        compile_rules([], [], {"api.test": "not-an-ip"})
    r = compile_rules([], [], {"API.Test.": "10.200.1.2"})
    assert r.override(normalize_host("api.test")) == A("10.200.1.2")


def test_every_preset_expands_to_valid_rules() -> None:
    for name in PRESETS:
        r = compile_rules([f"@{name}"], [])
        assert r.allow and all(x.preset == f"@{name}" for x in r.allow)


def test_preset_takes_no_port() -> None:
    with pytest.raises(RuleError, match="unknown preset"):
        parse_rule("@npm:8443")


# ------------------------------------------------------------------------------------------------ decide


def test_portless_allow_means_80_and_443_only() -> None:
    r = rules(["example.com"])
    assert decide(r, "example.com", 443).allowed
    assert decide(r, "example.com", 80).allowed
    assert not decide(r, "example.com", 22).allowed
    assert not decide(r, "example.com", 8443).allowed


def test_explicit_port_allows_only_that_port() -> None:
    r = rules(["example.com:8443"])
    assert decide(r, "example.com", 8443).allowed
    assert not decide(r, "example.com", 443).allowed


def test_deny_wins_over_allow() -> None:
    r = rules(["*.example.com"], ["secret.example.com"])
    d = decide(r, "secret.example.com", 443)
    assert d == Decision(False, "secret.example.com", "denied by rule secret.example.com", "denied-by-rule", d.host)
    assert d.host == "secret.example.com"
    assert decide(r, "ok.example.com", 443).allowed  # control


def test_portless_deny_denies_every_port() -> None:
    r = rules(["example.com:22"], ["example.com"])
    assert not decide(r, "example.com", 22).allowed


def test_wildcard_does_not_match_apex_or_lookalikes() -> None:
    r = rules(["*.example.com"])
    assert decide(r, "a.b.example.com", 443).allowed
    assert not decide(r, "example.com", 443).allowed
    assert not decide(r, "badexample.com", 443).allowed
    assert not decide(r, "example.com.evil.org", 443).allowed


def test_names_are_normalised_before_matching() -> None:
    r = rules(["bücher.example", "example.com"])
    for spelling in ("EXAMPLE.com", "example.com.", "Example.Com."):
        assert decide(r, spelling, 443).allowed, spelling
    assert decide(r, "BÜCHER.example", 443).allowed
    assert decide(r, "xn--bcher-kva.example", 443).allowed


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "::ffff:127.0.0.1",
        "[::ffff:7f00:1]",
        "127.0.0.1.",
    ],
)
def test_ip_literal_spellings_are_judged_as_the_address(spelling: str) -> None:
    assert decide(rules(["127.0.0.1:8080"]), spelling, 8080).allowed
    d = decide(rules(["*.example.com"], ["127.0.0.1"]), spelling, 8080)
    assert not d.allowed and d.rule == "127.0.0.1"


def test_alternative_spelling_of_denied_address_is_denied() -> None:
    """Attack: evade `deny 169.254.169.254` by writing it as decimal or hex."""
    r = rules(["*.example.com"], ["169.254.169.254"])
    for s in ("2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518"):
        assert not decide(r, s, 80).allowed, s


def test_numeric_looking_garbage_is_not_treated_as_a_name() -> None:
    """Attack: `1.2.3.999` or `0x7g.1` handed to DNS as a 'name' that a resolver might interpret."""
    r = rules(["*.example.com"])
    for s in ("1.2.3.999", "0x7g.1", "1.2.3.4.5", "99999999999", "1.2.3.4 junk"):
        d = decide(r, s, 443)
        assert not d.allowed and "invalid host" in d.reason, s


def test_invalid_port_is_denied() -> None:
    r = rules(["example.com"])
    assert not decide(r, "example.com", 0).allowed
    assert not decide(r, "example.com", 70000).allowed


def test_no_rule_reason() -> None:
    assert decide(rules([]), "example.org", 443) == Decision(
        False, None, "no allow rule", "no-allow-rule", "example.org"
    )  # type: ignore[arg-type]


def test_preset_rule_is_named_in_the_decision() -> None:
    d = decide(rules(["@pypi"]), "files.pythonhosted.org", 443)
    assert d.allowed and d.rule == "files.pythonhosted.org (from @pypi)"


# ------------------------------------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    ("addr", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("255.255.255.255", "broadcast"),
    ],
)
def test_name_resolving_to_forbidden_address_is_refused(addr: str, kind: str) -> None:
    d = check_address(rules(["api.example.com"]), A(addr), 443)
    assert not d.allowed and kind in d.reason


def test_name_resolving_to_host_own_address_is_refused() -> None:
    own = frozenset({A("192.0.2.2")})
    assert not check_address(rules(["x.example"]), A("192.0.2.2"), 443, own).allowed
    assert check_address(rules(["x.example"]), A("192.0.2.3"), 443, own).allowed  # control


def test_forbidden_address_allowed_when_the_literal_itself_is_allowed() -> None:
    r = rules(["localhost:8080", "127.0.0.1:8080"])
    assert check_address(r, A("127.0.0.1"), 8080).allowed
    assert not check_address(r, A("127.0.0.1"), 8081).allowed  # only that port


def test_ordinary_address_passes_and_deny_ip_applies_to_resolved_addresses() -> None:
    r = rules(["x.example"], ["203.0.113.7"])
    assert check_address(r, A("203.0.113.8"), 443).allowed
    assert not check_address(r, A("203.0.113.7"), 443).allowed


def test_suggest_allow() -> None:
    assert suggest_allow("example.org", 443) == "example.org"
    assert suggest_allow("example.org", 8080) == "example.org:8080"
    assert suggest_allow("2001:db8::1", 22) == "[2001:db8::1]:22"


# ------------------------------------------------------------------------------------------------ hosts


def test_parse_ipv4_loose_matches_inet_aton() -> None:
    import socket

    for s in ("1.2.3.4", "1.2.772", "1.131844", "16909060", "0x1020304", "01.02.03.04", "0x1.0x2.0x3.0x4", "0"):
        assert parse_ipv4_loose(s).packed == socket.inet_aton(s), s


def test_split_authority_never_splits_ipv6_on_colon() -> None:
    assert split_authority("[2001:db8::1]:443") == ("2001:db8::1", 443)
    assert split_authority("example.com:80") == ("example.com", 80)
    assert split_authority("example.com", 80) == ("example.com", 80)
    for bad in ("2001:db8::1:443", "example.com:", "example.com:99999", "[::1", "a:b:c", "user@host:80"):
        with pytest.raises(HostError):
            split_authority(bad)


def test_normalize_host_rejects() -> None:
    for bad in ("", ".", "a..b", "-a.com", "a" * 64 + ".com", "x" * 250 + ".com", "a b", "exa\x00mple.com"):
        with pytest.raises(HostError):
            normalize_host(bad)


# ------------------------------------------------------------------------------------------------ IPv6 carrying IPv4

# (spelling, the IPv4 address it carries, its kind): every IPv6 form that embeds an IPv4 address, pointing at
# what is never a destination by name. Judged by the embedded address whatever routes this machine has.
EMBEDDED_ATTACKS = [
    ("::127.0.0.1", "127.0.0.1", "loopback"),  # IPv4-compatible (sit0 routes ::/96 to the IPv4 address)
    ("::ffff:0:127.0.0.1", "127.0.0.1", "loopback"),  # IPv4-translated (SIIT)
    ("64:ff9b::127.0.0.1", "127.0.0.1", "loopback"),  # NAT64 well-known prefix
    ("64:ff9b::169.254.169.254", "169.254.169.254", "cloud metadata"),
    ("64:ff9b::169.254.1.1", "169.254.1.1", "link-local"),
    ("64:ff9b:1::7f00:1", "127.0.0.1", "loopback"),  # local-use NAT64, /96 inside 64:ff9b:1::/48
    ("64:ff9b:1:7f00:0:100::", "127.0.0.1", "loopback"),  # local-use NAT64, /48 format (u octet skipped)
    ("64:ff9b:1:a9:fe:a9fe::", "169.254.169.254", "cloud metadata"),  # local-use NAT64, /56 format
    ("2002:7f00:1::1", "127.0.0.1", "loopback"),  # 6to4
    ("2002:a9fe:a9fe::", "169.254.169.254", "cloud metadata"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", "loopback"),  # Teredo client (obfuscated)
    ("2001:0:7f00:1::1", "127.0.0.1", "loopback"),  # Teredo server
    ("2001:db8::5efe:7f00:1", "127.0.0.1", "loopback"),  # ISATAP interface identifier
    ("2001:db8::200:5efe:a9fe:a9fe", "169.254.169.254", "cloud metadata"),  # ISATAP, u bit set
    ("64:ff9b::0.0.0.0", "0.0.0.0", "unspecified"),
]


@pytest.mark.parametrize(("addr", "inner", "kind"), EMBEDDED_ATTACKS)
def test_ipv6_embedding_a_forbidden_ipv4_address_is_refused(addr: str, inner: str, kind: str) -> None:
    d = check_address(rules(["api.example.com"]), A(addr), 443)
    assert not d.allowed
    assert d.reason == f"resolves to {A(addr)}, which embeds {kind} address {inner}"
    assert d.address == str(A(addr))


@pytest.mark.parametrize("addr", ["::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"])
def test_ipv6_embedding_the_hosts_own_address_is_refused(addr: str) -> None:
    own = frozenset({A("192.0.2.2")})
    v6 = A(addr.replace("7f00:1", "c000:202").replace("127.0.0.1", "192.0.2.2"))
    assert not check_address(rules(["x.example"]), v6, 443, own).allowed
    assert check_address(rules(["x.example"]), v6, 443).allowed  # control: not this host's address


def test_ipv6_embedding_a_denied_ipv4_address_is_denied_by_that_rule() -> None:
    r = rules(["x.example"], ["10.1.2.3"])
    d = check_address(r, A("64:ff9b::10.1.2.3"), 443)
    assert not d.allowed and d.rule == "10.1.2.3" and "embedded 10.1.2.3" in d.reason
    assert not check_address(r, A("2002:a01:203::1"), 443).allowed
    assert check_address(r, A("64:ff9b::10.1.2.4"), 443).allowed  # control: another private address


@pytest.mark.parametrize(
    "addr",
    [
        "2001:db8::1",  # ordinary IPv6
        "64:ff9b::203.0.113.7",  # NAT64 of an ordinary address (how an IPv6-only network reaches IPv4 servers)
        "64:ff9b:1::203.0.113.7",  # local-use NAT64, /96
        "2002:cb00:7107::1",  # 6to4 of an ordinary address
        "2001:0:cb00:7107:0:fbff:34ff:fffe",  # Teredo of ordinary addresses
        "64:ff9b::10.0.0.1",  # private addresses are not refused (the same as 10.0.0.1 itself)
        "fd00::1",
    ],
)
def test_ipv6_embedding_an_ordinary_address_control_passes(addr: str) -> None:
    assert check_address(rules(["api.example.com"]), A(addr), 443).allowed


def test_ipv6_embedding_loopback_allowed_only_by_its_own_literal() -> None:
    """Allowing 127.0.0.1:8080 (a dev server) does not allow ::127.0.0.1; allowing that literal does."""
    assert not check_address(rules(["127.0.0.1:8080"]), A("::127.0.0.1"), 8080).allowed
    assert check_address(rules(["[::127.0.0.1]:8080"]), A("::127.0.0.1"), 8080).allowed


def test_embedded_ipv4_readings() -> None:
    from rcc.net.hosts import embedded_ipv4

    assert embedded_ipv4(A("::1")) == () and embedded_ipv4(A("::")) == () and embedded_ipv4(A("127.0.0.1")) == ()
    assert embedded_ipv4(A("2001:db8::1")) == ()
    assert embedded_ipv4(A("2001:0:4136:e378:8000:63bf:3fff:fdd2")) == (A("65.54.227.120"), A("192.0.2.45"))
    # RFC 6052 §2.4 examples (192.0.2.33 under each prefix length), read as local-use prefixes here
    assert A("192.0.2.33") in embedded_ipv4(A("64:ff9b:1:c000:2:2100::"))  # /48
    assert A("192.0.2.33") in embedded_ipv4(A("64:ff9b:1:00c0:0:221::"))  # /56
    assert A("192.0.2.33") in embedded_ipv4(A("64:ff9b:1:0:c0:2:2100::"))  # /64
    assert embedded_ipv4(A("64:ff9b:1::192.0.2.33")) == (A("192.0.2.33"),)  # /96; 0.x readings of the padding skipped
