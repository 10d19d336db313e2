"""`rcc policy suggest`: the smallest allow list covering what learn mode let through, never over-broad."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rcc.live.suggest import suggest
from rcc.net.hosts import normalize_host
from rcc.net.rules import compile_rules, decide_host


def covers(rules: list[str], learned: list[tuple[str, int]]) -> bool:
    r = compile_rules(rules, [])
    return all(decide_host(r, normalize_host(h), p).allowed for h, p in learned)


def test_exact_names_and_ports() -> None:
    learned = [("docs.example.org", 443), ("docs.example.org", 80), ("git.example.net", 8443)]
    assert suggest(learned) == ["docs.example.org", "git.example.net:8443"]


def test_three_names_below_one_parent_become_a_wildcard() -> None:
    learned = [("a.cdn.example.org", 443), ("b.cdn.example.org", 443), ("c.cdn.example.org", 443), ("x.io", 443)]
    assert suggest(learned) == ["*.cdn.example.org", "x.io"]
    assert suggest(learned[:2]) == ["a.cdn.example.org", "b.cdn.example.org"]  # two are not enough


def test_never_a_wildcard_over_a_tld_or_public_suffix() -> None:
    tld = [("a.com", 443), ("b.com", 443), ("c.com", 443)]
    assert suggest(tld) == ["a.com", "b.com", "c.com"]
    shared = [(f"{n}.github.io", 443) for n in "abcd"]
    assert suggest(shared) == sorted(h for h, _ in shared)  # anyone can publish below github.io


def test_a_preset_when_two_of_its_hosts_were_learned() -> None:
    assert suggest([("pypi.org", 443), ("files.pythonhosted.org", 443)]) == ["@pypi"]
    assert suggest([("pypi.org", 443)]) == ["pypi.org"]


def test_ip_literals_stay_exact() -> None:
    assert suggest([("203.0.113.5", 443), ("203.0.113.6", 443), ("203.0.113.7", 443)]) == [
        "203.0.113.5",
        "203.0.113.6",
        "203.0.113.7",
    ]
    assert suggest([("2001:db8::1", 8080)]) == ["[2001:db8::1]:8080"]


NAMES = st.sampled_from(
    ["a.x.example", "b.x.example", "c.x.example", "d.x.example", "pypi.org", "files.pythonhosted.org",
     "registry.npmjs.org", "a.com", "b.com", "c.com", "203.0.113.9", "solo.example.net"]
)  # fmt: skip


@settings(max_examples=200)
@given(st.lists(st.tuples(NAMES, st.sampled_from([80, 443, 8080])), min_size=1, max_size=12))
def test_suggestion_always_covers_what_was_learned(learned: list[tuple[str, int]]) -> None:
    rules = suggest(learned)
    assert covers(rules, learned)
    assert len(rules) <= len(set(learned))
