"""rcc.record: the dataclass replacement on `rcc run`'s start-up path behaves like frozen dataclasses where rcc
relies on it (construction, equality, hashing, immutability, replace/asdict/fields), and imports nothing heavy."""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from typing import ClassVar

import pytest

from rcc.record import MISSING, FrozenInstanceError, asdict, field, fields, is_record, record, replace
from rcctest import require


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@record
class Box:
    name: str
    corners: tuple[Point, ...] = ()
    items: list[Point] = field(default_factory=list)
    meta: dict[str, Point] = field(default_factory=dict)


@record(frozen=False)
class Counter:
    n: int = 0
    seen: list[str] = field(default_factory=list)


@record(slots=True)
class Slotted:
    a: int
    b: str = "b"


# ------------------------------------------------------------------------------------------- construction


def test_positional_and_keyword_arguments_like_dataclasses() -> None:
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2)
    assert Point(3).y == 0
    assert Point(1, 2, ("t",)).tags == ("t",)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, (), 4), {}), ((1,), {"x": 1}), ((1,), {"z": 2})],
    ids=["missing", "too-many", "twice", "unknown"],
)
def test_bad_arguments_raise_type_error(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        Point(*args, **kwargs)  # type: ignore[arg-type,misc]


def test_default_factory_makes_a_new_value_per_instance() -> None:
    a, b = Box("a"), Box("b")
    a.items.append(Point(1))
    assert b.items == []
    assert a.items is not b.items


def test_a_mutable_plain_default_is_refused() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @record
        class Bad:
            xs: list[int] = []


def test_a_field_without_default_after_one_with_default_is_refused() -> None:
    with pytest.raises(TypeError, match="follows default field"):

        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_field_named_self_or_other_works() -> None:
    @record
    class Odd:
        self: int
        other: int = 2

    o = Odd(1)
    assert (o.self, o.other) == (1, 2)
    assert o == Odd(self=1, other=2)


def test_classvar_is_not_a_field() -> None:
    @record
    class WithConst:
        LIMIT: ClassVar[int] = 3
        x: int = 1

    assert [f.name for f in fields(WithConst)] == ["x"]
    assert WithConst.LIMIT == 3


def test_post_init_runs_in_init_and_replace() -> None:
    @record
    class Port:
        n: int

        def __post_init__(self) -> None:
            if not 0 < self.n < 65536:
                raise ValueError(f"bad port {self.n}")

    assert Port(80).n == 80
    with pytest.raises(ValueError, match="bad port"):
        Port(0)
    with pytest.raises(ValueError, match="bad port"):
        replace(Port(80), n=70000)


def test_inherited_fields_come_first() -> None:
    @record
    class Base:
        a: int
        b: int = 1

    @record
    class Child(Base):
        c: int = 2

    assert [f.name for f in fields(Child)] == ["a", "b", "c"]
    assert Child(5, c=7) == Child(a=5, b=1, c=7)
    assert Child(5).__match_args__ == ("a", "b", "c")


# -------------------------------------------------------------------------------- repr, equality, hashing


def test_repr_names_class_and_fields() -> None:
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=())"
    assert repr(Box("b")) == "Box(name='b', corners=(), items=[], meta={})"


def test_equality_needs_the_same_class() -> None:
    @record
    class OtherPoint:
        x: int
        y: int = 0
        tags: tuple[str, ...] = ()

    assert Point(1) != OtherPoint(1)
    assert Point(1) != (1, 0, ())
    assert Point(1) != Point(2)


def test_frozen_records_hash_by_value() -> None:
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(2, 1)}) == 2


def test_mutable_records_are_unhashable_and_assignable() -> None:
    c = Counter()
    c.n += 1
    c.seen.append("x")
    assert c == Counter(1, ["x"])
    with pytest.raises(TypeError):
        hash(c)


def test_pattern_matching_uses_field_order() -> None:
    match Point(1, 2):
        case Point(1, y):
            assert y == 2
        case _:
            pytest.fail("no match")


# --------------------------------------------------------------------------------------------- frozen


def test_assigning_a_field_of_a_frozen_record_raises() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError, as dataclasses' is
        p.new = 1  # type: ignore[attr-defined]
    with pytest.raises(FrozenInstanceError):
        del p.x  # type: ignore[misc]
    assert p == Point(1)


def test_slotted_record_is_frozen_and_has_no_dict() -> None:
    s = Slotted(1)
    assert not hasattr(s, "__dict__")
    assert Slotted.__qualname__ == "Slotted"
    assert (s.a, s.b) == (1, "b")
    with pytest.raises(FrozenInstanceError):
        s.a = 2  # type: ignore[misc]
    assert s == Slotted(1, "b")
    assert hash(s) == hash(Slotted(1))


@pytest.mark.parametrize("value", [Point(1, 2, ("a",)), Slotted(3, "x"), Box("b", items=[Point(1)])])
def test_copy_and_pickle_round_trip(value: object) -> None:
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(value)) == value


# ---------------------------------------------------------------------------------- replace/asdict/fields


def test_replace_returns_a_changed_copy() -> None:
    p = Point(1, 2)
    q = replace(p, y=5)
    assert (p, q) == (Point(1, 2), Point(1, 5))
    with pytest.raises(TypeError):
        replace(p, nope=1)
    with pytest.raises(TypeError):
        replace(Point, x=1)
    with pytest.raises(TypeError):
        replace(object(), x=1)


def test_fields_of_class_and_instance() -> None:
    fs = fields(Box)
    assert [f.name for f in fs] == ["name", "corners", "items", "meta"]
    assert fields(Box("b")) == fs
    assert fs[0].default is MISSING and fs[1].default == () and fs[2].default_factory is list
    assert fs[0].type == "str"  # annotations stay strings (from __future__ import annotations)
    assert is_record(Box) and is_record(Box("b")) and not is_record(object())
    with pytest.raises(TypeError):
        fields(object())


def test_asdict_matches_dataclasses_asdict() -> None:
    """The same shape built with dataclasses gives the same dict (records, tuples, lists, dicts, named tuples)."""
    pair = namedtuple("pair", "a b")

    @dataclasses.dataclass(frozen=True)
    class DPoint:
        x: int
        y: int = 0
        tags: tuple[str, ...] = ()

    @dataclasses.dataclass(frozen=True)
    class DBox:
        name: str
        corners: tuple[DPoint, ...] = ()
        items: list[DPoint] = dataclasses.field(default_factory=list)
        meta: dict[str, object] = dataclasses.field(default_factory=dict)

    ours = Box("b", (Point(1), Point(2, 3, ("t",))), [Point(4)], {"k": Point(5), "p": pair(Point(6), [1])})  # type: ignore[dict-item]
    theirs = DBox("b", (DPoint(1), DPoint(2, 3, ("t",))), [DPoint(4)], {"k": DPoint(5), "p": pair(DPoint(6), [1])})
    got = asdict(ours)
    assert got == dataclasses.asdict(theirs)
    assert type(got["corners"]) is tuple and type(got["items"]) is list and type(got["meta"]["p"]) is pair
    with pytest.raises(TypeError):
        asdict(Point)
    with pytest.raises(TypeError):
        asdict({"x": 1})


def test_asdict_copies_mutable_values() -> None:
    c = Counter(1, ["a"])
    d = asdict(c)
    d["seen"].append("b")
    assert c.seen == ["a"]


# ------------------------------------------------------------------------------------------ start-up cost


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return set(out.stdout.split())


HEAVY = ("dataclasses", "inspect", "typing", "enum", "re", "copy")


def test_importing_record_loads_nothing_heavy() -> None:
    loaded = _imported("import rcc.record")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_run_path_modules_load_no_dataclasses() -> None:
    """The modules `rcc run` imports before it starts the sandbox (runner pulls in compile, config, plan,
    policy, probe; then the bwrap backend and seccomp)."""
    loaded = _imported("import rcc.runner, rcc.backends.bwrap, rcc.seccomp")
    assert not loaded & {"dataclasses", "inspect", "typing"}, loaded & {"dataclasses", "inspect", "typing"}


@pytest.mark.sandbox
def test_real_rcc_run_imports_no_dataclasses(tmp_path: Path) -> None:
    """The whole of a real `rcc run --no-network -- true`, lazy imports included."""
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is not installed")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rcc", "run", "--no-network", "--", "true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.returncode == 0, out.stderr
    loaded = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "rcc.plan" in loaded and "rcc.seccomp" in loaded  # the run really went through
    assert not loaded & {"dataclasses", "inspect", "typing"}, loaded & {"dataclasses", "inspect", "typing"}
