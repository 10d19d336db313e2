"""Value classes for `rcc run`'s start-up path, without importing `dataclasses`.

`dataclasses` costs every `rcc run` ~8 ms of imports (it pulls in `inspect`, `re`, `enum`, `copy`...) and several
more to build each class. `@record` makes the same kind of class from the class annotations, using only builtins:

    @record                       # frozen (the default): assignment and deletion raise FrozenInstanceError
    class Bind:
        src: str
        dest: str
        writable: bool = False
        tags: tuple[str, ...] = field(default_factory=tuple)

    @record(frozen=False)         # mutable: assignable attributes, eq, unhashable (like a plain @dataclass)
    class Flags: ...

    @record(slots=True)           # a new class with __slots__ (no instance __dict__)

Invariants (what callers may rely on; tests/core/test_record.py pins them):
1. Fields are the class annotations in order, after the fields of record base classes; `ClassVar` annotations are
   not fields. A field without a default may not follow one with a default (TypeError, as with dataclasses).
2. `__init__` takes the fields positionally or by keyword; `field(default_factory=f)` calls f once per instance;
   a mutable (unhashable) plain default is refused (ValueError), so instances never share a list or dict.
   `__post_init__`, when defined, runs at the end of `__init__`.
3. `__eq__` compares the fields as a tuple and only with an instance of the same class; frozen records hash their
   fields' tuple, mutable ones are unhashable. `__repr__` is `Name(field=value, ...)`.
4. `replace()` goes through `__init__` (so `__post_init__` validation runs again); `asdict()` recurses into
   records, lists, tuples (named tuples too) and dicts like `dataclasses.asdict`.

No code is generated (no exec): `__init__`, `__repr__`, `__eq__` and `__hash__` are shared functions that read
the class's fields. Measured on the dev VM: importing this module ~0.25 ms (dataclasses: ~8-10 ms), defining a
4-field class ~15 us (a frozen dataclass: ~330 us), constructing one ~0.6 us (a dataclass: ~0.4 us).
mypy sees `record` through `typing.dataclass_transform(frozen_default=True)`, so it checks constructors and
rejects assignment to a frozen record's fields as it would for frozen dataclasses.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing costs `rcc run` an import; mypy still sees the block
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
    _C = TypeVar("_C", bound=type)


class FrozenInstanceError(AttributeError):
    """Assignment to, or deletion of, a field of a frozen record."""


class _MissingType:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _MissingType()  # "no default" (a constant sentinel, never mutated)


class Field:
    """One field of a record: `name`, `type` (the annotation, usually a string), `default` and
    `default_factory` (MISSING when absent)."""

    __slots__ = ("default", "default_factory", "name", "type")

    def __init__(self, default: object = MISSING, default_factory: object = MISSING) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.type: object = None
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}, " + (
            f"default_factory={self.default_factory!r})"
        )


def _field(*, default: object = MISSING, default_factory: object = MISSING) -> Any:
    if default_factory is not MISSING and not callable(default_factory):
        raise TypeError(f"default_factory must be callable, not {default_factory!r}")
    return Field(default, default_factory)


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):
        head = annotation.split("[", 1)[0].strip()
        return head in ("ClassVar", "typing.ClassVar", "t.ClassVar")
    typing = sys.modules.get("typing")  # only when the annotation is a real object (no `from __future__`)
    if typing is None:
        return False
    return annotation is typing.ClassVar or getattr(annotation, "__origin__", None) is typing.ClassVar


def _collect(cls: type) -> tuple[Field, ...]:
    """The fields of `cls`: those of record bases (outermost first), then its own annotations in order."""
    by_name: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            by_name[f.name] = f
    # the class's own annotations only (inspect.get_annotations would cost the `inspect` import this avoids)
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.type = name, annotation
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(
                f"mutable default {type(f.default).__name__} for field {name} of {cls.__qualname__} is not "
                "allowed: use field(default_factory=...)"
            )
        by_name[name] = f
    fields = tuple(by_name.values())
    seen_default = ""
    for f in fields:
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = f.name
        elif seen_default:
            raise TypeError(
                f"non-default field {f.name!r} follows default field {seen_default!r} in {cls.__qualname__}"
            )
    return fields


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of frozen {type(self).__qualname__}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of frozen {type(self).__qualname__}")


def _frozen_setstate(self: object, state: object) -> None:
    """Unpickling/copying a frozen slotted record (the default __setstate__ would go through __setattr__)."""
    slots = state[1] if isinstance(state, tuple) else state
    if isinstance(slots, dict):
        for name, value in slots.items():
            object.__setattr__(self, name, value)


def _values(obj: Any) -> tuple[object, ...]:
    return tuple([getattr(obj, n) for n in obj.__record_names__])


def _repr(self: Any) -> str:
    shown = ", ".join([f"{n}={getattr(self, n)!r}" for n in self.__record_names__])
    return f"{type(self).__qualname__}({shown})"


def _eq(self: object, other: object) -> object:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: object) -> int:
    return hash(_values(self))


def _init(cls: type, fields: tuple[Field, ...], frozen: bool) -> Any:
    """One __init__ shared in shape by every record: positional and keyword arguments are matched to the fields
    by name. No code is generated (an exec per class cost ~50 us to compile, more than ~600 constructions a run
    save with it: ~0.6 us a call here, ~0.4 us for generated code)."""
    qualname = cls.__qualname__
    names = tuple(f.name for f in fields)
    count, known = len(names), frozenset(names)
    defaults = {f.name: f.default for f in fields if f.default is not MISSING}
    factories: tuple[tuple[str, Any], ...] = tuple(
        (f.name, f.default_factory) for f in fields if f.default_factory is not MISSING
    )
    required = tuple(f.name for f in fields if f.default is MISSING and f.default_factory is MISSING)
    post_init = hasattr(cls, "__post_init__")
    # A frozen record without slots fills its instance dict at once; a slotted one has no dict, and a mutable
    # one assigns through setattr (so a class's own __setattr__ or properties still apply).
    fill_dict = frozen and "__slots__" not in cls.__dict__
    set_one = object.__setattr__ if frozen else setattr

    def __init__(self: Any, /, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(f"{qualname}() takes {count} arguments but {len(args)} were given")
        given = dict(zip(names, args, strict=False))  # fewer arguments than fields: the rest by keyword or default
        if kwargs:
            for k in kwargs:
                if k in given:
                    raise TypeError(f"{qualname}() got multiple values for argument {k!r}")
                if k not in known:
                    raise TypeError(f"{qualname}() got an unexpected keyword argument {k!r}")
            given.update(kwargs)
        if len(given) < count:
            for k in required:
                if k not in given:
                    raise TypeError(f"{qualname}() missing required argument {k!r}")
            for k, factory in factories:
                if k not in given:
                    given[k] = factory()
            given = {**defaults, **given}
        if fill_dict:
            self.__dict__.update(given)
        else:
            for k, v in given.items():
                set_one(self, k, v)
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{qualname}.__init__"
    __init__.__module__ = cls.__module__
    return __init__


def _process(cls: _C, frozen: bool, slots: bool) -> _C:
    fields = _collect(cls)
    names = tuple(f.name for f in fields)
    for f in fields:  # plain defaults stay as class attributes (as with dataclasses); field() objects go
        if f.name in cls.__dict__ and isinstance(cls.__dict__[f.name], Field):
            if f.default is MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    if slots:
        if "__slots__" in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} already specifies __slots__")
        inherited = {s for base in cls.__mro__[1:] for s in base.__dict__.get("__slots__", ())}
        body = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
        body["__slots__"] = tuple(n for n in names if n not in inherited)
        qualname = cls.__qualname__
        cls = type(cls)(cls.__name__, cls.__bases__, body)
        cls.__qualname__ = qualname
        if frozen:
            setattr(cls, "__setstate__", _frozen_setstate)  # noqa: B010 -- mypy: type[Any] has no such attribute
    cls.__init__ = _init(cls, fields, frozen)  # type: ignore[misc]
    if "__repr__" not in cls.__dict__:  # a class's own __repr__/__eq__ wins
        setattr(cls, "__repr__", _repr)  # noqa: B010 -- mypy: cannot assign to a method
    if "__eq__" not in cls.__dict__:
        setattr(cls, "__eq__", _eq)  # noqa: B010
    setattr(cls, "__hash__", _hash if frozen else None)  # noqa: B010 -- mutable records are unhashable
    if frozen:
        if "__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__:
            raise TypeError(f"frozen record {cls.__qualname__} may not define __setattr__ or __delattr__")
        setattr(cls, "__setattr__", _frozen_setattr)  # noqa: B010
        setattr(cls, "__delattr__", _frozen_delattr)  # noqa: B010
    setattr(cls, "__record_fields__", fields)  # noqa: B010
    setattr(cls, "__record_names__", names)  # noqa: B010
    setattr(cls, "__match_args__", names)  # noqa: B010
    return cls


def _record(cls: type | None = None, /, *, frozen: bool = True, slots: bool = False) -> Any:
    if cls is None:
        return lambda c: _process(c, frozen, slots)
    return _process(cls, frozen, slots)


if TYPE_CHECKING:

    @overload
    def field(*, default: _T) -> _T: ...
    @overload
    def field(*, default_factory: Callable[[], _T]) -> _T: ...
    def field(*, default: Any = ..., default_factory: Any = ...) -> Any: ...

    @overload
    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def record(cls: _C, /) -> _C: ...
    @overload
    def record(*, frozen: bool = True, slots: bool = False) -> Callable[[_C], _C]: ...
    def record(cls: Any = None, /, *, frozen: bool = True, slots: bool = False) -> Any: ...

else:
    field = _field
    record = _record


def is_record(obj: object) -> bool:
    """True for a record class or instance."""
    return hasattr(obj if isinstance(obj, type) else type(obj), "__record_fields__")


def fields(obj_or_cls: object) -> tuple[Field, ...]:
    """The fields of a record class or instance, in order."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    found: tuple[Field, ...] | None = getattr(cls, "__record_fields__", None)
    if found is None:
        raise TypeError(f"fields() needs a record class or instance, not {cls.__qualname__}")
    return found


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of the record `obj` with `changes` (through __init__, so validation runs again)."""
    if isinstance(obj, type) or not is_record(obj):
        raise TypeError(f"replace() needs a record instance, not {obj!r}")
    for f in fields(obj):
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return type(obj)(**changes)


_ATOMIC = frozenset({str, int, float, bool, complex, bytes, type(None)})


def asdict(obj: object) -> dict[str, Any]:
    """The fields of the record `obj` as a dict, recursing into records, lists, tuples and dicts (other values
    are deep-copied, as `dataclasses.asdict` does)."""
    if isinstance(obj, type) or not is_record(obj):
        raise TypeError(f"asdict() needs a record instance, not {obj!r}")
    out: dict[str, Any] = _asdict(obj)
    return out


def _asdict(obj: Any) -> Any:
    t = type(obj)
    if t in _ATOMIC:
        return obj
    record_fields = getattr(t, "__record_fields__", None)
    if record_fields is not None and not isinstance(obj, type):
        return {f.name: _asdict(getattr(obj, f.name)) for f in record_fields}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple takes its fields positionally
        return t(*[_asdict(v) for v in obj])
    if isinstance(obj, list | tuple):
        return t(_asdict(v) for v in obj)
    if isinstance(obj, dict):
        return t((_asdict(k), _asdict(v)) for k, v in obj.items())
    import copy

    return copy.deepcopy(obj)
