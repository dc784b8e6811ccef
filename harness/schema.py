"""One checker for the YAML files the harness reads, driven by a dataclass and its type hints.

A file's shape is a dataclass: each field is a key, its type hint says what the value may be
(str, int, float, bool, Literal choices, unions, lists, tuples, dicts, a nested dataclass), its
default applies when the key is absent, and `Annotated` metadata says what a type cannot:
`Range`, `Positive`, `NonEmpty`, `OneOf` (choices known at run time), `Expect` (the noun the
message uses), `Required` (the message for a missing key) and `Via` (a parser for a value no type
describes). `check` reads a parsed mapping (a `MarkedDict` from yamlio, whose lines it reports,
or a plain dict) and reports every problem, not just the first, to a `Report` as
`file:line: field: problem`:

    @dataclass(frozen=True, kw_only=True)
    class Server:
        host: Annotated[str, NonEmpty(), Required("missing; the machine to connect to")]
        port: Annotated[int, Range(1, 65535)] = 8080
        mode: Literal["fast", "safe"] = "safe"
        tags: tuple[str, ...] = ()

    report = Report("server.yaml")
    fields = check(load_yaml(path), Server, report)
    report.raise_if_any()  # server.yaml:3: port: expected a number from 1 to 65535, got 0
    server = fields.build()  # Server(host=..., port=..., mode=..., tags=(...))

Fields without a default are required unless `check(defaults=...)` supplies one: defaults that
depend on the file (its name, a suite's `defaults:`) come from the caller. kw_only dataclasses
let required and optional fields interleave, so the fields can follow the file's order, which is
the order problems are reported in. A value that needs code (a scorer spec, a conversation) is a
field `Annotated[T, Via(parse)]`: `parse(value, at)` returns the typed value and reports through
`at.add(message)`, so its problems land in the same report, at the same field and line. The
`Checked` result also tells which fields were given and which were wrong, for callers that
carry on with the rest (a wrong `defaults.scorer` is not reported again for each question).
A value is typed as its field declares: a YAML list for a tuple field becomes a tuple, a YAML
integer for a float field a float. A file whose keys come in any order is checked in its own
order (`order="file"`), and one whose users know other messages keeps them (`wording=`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .errors import InputError, Problem, hint

T = TypeVar("T")


# --------------------------------------------------------------------------- type machinery


@dataclass(frozen=True)
class Range:
    """Bounds of a number (`Annotated[float, Range(0)]`): scorer options and schema fields
    refuse values outside them. An open bound is itself outside: a dropout is
    `Range(0, 1, high_open=True)`, since a dropout of 1 would drop everything."""

    low: float | None = None
    high: float | None = None
    low_open: bool = dataclasses.field(default=False, kw_only=True)
    high_open: bool = dataclasses.field(default=False, kw_only=True)

    def admits(self, value: Any) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def problem(self, value: Any) -> str | None:
        return None if self.admits(value) else f"expected a number {self.span()}, got {value!r}"

    def span(self) -> str:
        """The bounds as a message says them: ">= 1", "from 0 to 1", "in [0, 1)"."""
        low, high = self.low, self.high
        if high is None:
            return f"{'>' if self.low_open else '>='} {low}"
        if low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        if not (self.low_open or self.high_open):
            return f"from {low} to {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return f"a list of {type_name(inner)}s"
    if typing.get_origin(tp) is dict:
        key, value = typing.get_args(tp) or (Any, Any)
        return f"a mapping of {type_name(key)}s to {type_name(value)}s"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(type_name(t) for t in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def matches_type(value: Any, tp: Any) -> bool:
    """A small structural type check for plain YAML values (no classes beyond the builtins)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(matches_type(v, inner) for v in value)
    if origin is dict:
        key, inner = typing.get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(
            matches_type(k, key) and matches_type(v, inner) for k, v in value.items()
        )
    if origin is not None and typing.get_args(tp):  # a union
        return any(matches_type(value, t) for t in typing.get_args(tp))
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    return isinstance(value, tp)


def _members(tp: Any) -> tuple[Any, ...]:
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    return typing.get_args(tp) if union else (tp,)


def noun(tp: Any) -> str:
    """What a message says was expected: "a string", "a list of strings", "true or false".
    Null goes unmentioned: a file rarely means to write it."""
    kinds = [m for m in _members(tp) if m is not type(None)]
    if len(kinds) != 1:
        return " or ".join(noun(k) for k in kinds) or "null"
    (tp,) = kinds
    bare = all(a is Any or a is Ellipsis for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp) or (bare and (typing.get_origin(tp) or tp) is dict):
        return "a mapping"
    if bare and (typing.get_origin(tp) or tp) in (list, tuple):
        return "a list"
    if tp is bool:
        return "true or false"
    if tp is Any:
        return "a value"
    name = type_name(tp)
    if name in ("string", "integer", "number"):
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
    return name


# --------------------------------------------------------------------------- field metadata


@dataclass(frozen=True)
class Positive:
    """More than zero: `Annotated[int, Positive()]` reads "expected a positive integer"."""

    word = "positive"

    def admits(self, value: Any) -> bool:
        return value > 0


@dataclass(frozen=True)
class NonEmpty:
    """Not blank: a string with more than whitespace, a list or mapping with an item."""

    word = "non-empty"

    def admits(self, value: Any) -> bool:
        if isinstance(value, str):
            return bool(value.strip())
        return len(value) > 0 if isinstance(value, list | dict) else True


@dataclass(frozen=True)
class Expect:
    """The noun every message about the field uses, where the type's own would not say what is
    meant ("a significance level in (0, 1]" rather than "a number")."""

    noun: str


@dataclass(frozen=True)
class Required:
    """The message for a missing key (a field without a default; a null counts as missing), and
    keys that stand in for it (`unless`): where one is given, the field is neither needed nor
    read (a question's messages replace its prompt; the parser of messages refuses both)."""

    message: str
    unless: tuple[str, ...] = ()


@dataclass(frozen=True)
class At:
    """Where a `Via` parser's value sits: the mapping that holds it (and that mapping's path,
    `where`), its key and line, and the values of the fields checked before it (a parser may
    depend on them)."""

    report: Report
    where: str
    key: str
    line: int | None
    mapping: Mapping[Any, Any]
    earlier: Mapping[str, Any]

    @property
    def field(self) -> str:
        return _join(self.where, self.key)

    def add(self, message: str, line: int | None = None, field: str | None = None) -> None:
        """A problem at the field (or at a line and field inside its value)."""
        self.report.add(self.line if line is None else line, field or self.field, message)


@dataclass(frozen=True)
class Via:
    """A parser for a value no type hint describes (a scorer spec, a conversation): it gets the
    given value (null included) and an `At`, reports its own problems, and returns the typed
    value; the field counts as invalid when it reported any."""

    parse: Callable[[Any, At], Any]


@dataclass(frozen=True)
class OneOf:
    """Choices that are known only when a value is checked (a library's list of optimizers):
    a `Literal` would need them, and the library imported, when the module is."""

    choices: Callable[[], Sequence[Any]]


Qualifier = Positive | NonEmpty


# --------------------------------------------------------------------------- the checker


class Report:
    """Every problem found in one file, so that one run shows all that is wrong with it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, message, line, field))

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError(problems=self.problems)


def unknown_key(key: Any, known: Collection[str]) -> str:
    return f"unknown key; {hint(key, known)}"


def unknown_key_listing(key: Any, known: Collection[str]) -> str:
    """The unknown-key message that lists every key, for files with only a few."""
    return f"unknown key (known: {', '.join(known)})"


class Wording:
    """How a kind of file words the problems of its values. This one reads "expected an
    integer, got 'x'", "expected a number >= 1, got 0" and "expected one of 'a', 'b', got 'c'";
    a file whose users already know other messages keeps them with a subclass, and the checks
    stay the same."""

    def noun(self, tp: Any) -> str:
        """What a value of type `tp` is called in "expected ..., got ..."."""
        return noun(tp)

    def out_of_range(self, bounds: Range, value: Any) -> str:
        return f"expected a number {bounds.span()}, got {value!r}"

    def not_a_choice(self, choices: Sequence[Any], value: Any) -> str:
        return f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}"


WORDING = Wording()


DUPLICATE_KEY = "duplicate key (YAML would keep only the last)"
_ABSENT = object()


@dataclass(frozen=True)
class _Field:
    name: str
    type: Any
    default: Callable[[], Any] | None  # None: required
    qualifiers: tuple[Qualifier, ...]
    ranges: tuple[Range, ...]
    choices: OneOf | None
    expect: str | None
    required: Required | None
    via: Via | None


def _first(extras: Any, kind: type) -> Any:
    return next((e for e in extras if isinstance(e, kind)), None)


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


@functools.cache
def _fields(schema: type) -> dict[str, _Field]:
    hints = typing.get_type_hints(schema, include_extras=True)
    out = {}
    for f in dataclasses.fields(schema):
        tp, extras = hints[f.name], ()
        if typing.get_origin(tp) is typing.Annotated:
            tp, *extras = typing.get_args(tp)
        if f.default is not dataclasses.MISSING:
            default = _constant(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory
        else:
            default = None
        expect = _first(extras, Expect)
        out[f.name] = _Field(
            f.name,
            tp,
            default,
            tuple(e for e in extras if isinstance(e, Positive | NonEmpty)),
            tuple(e for e in extras if isinstance(e, Range)),
            _first(extras, OneOf),
            expect.noun if expect else None,
            _first(extras, Required),
            _first(extras, Via),
        )
    return out


@dataclass(frozen=True)
class Checked(Generic[T]):
    """What `check` found: each field's value (as given when valid, else its default, or None
    for a missing required field), the fields given, those with a problem, and every problem
    (also added to the report)."""

    schema: type[T]
    values: dict[str, Any]
    given: frozenset[str]
    invalid: frozenset[str]
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def build(self) -> T:
        """The dataclass itself; meaningful when `ok` (invalid fields hold their defaults)."""
        return self.schema(**self.values)


def report_duplicates(data: Any, where: str, report: Report) -> None:
    """Keys a YAML mapping gives twice: YAML keeps the last silently, so a file whose mappings
    are read without `check` reports them here."""
    for key, line in getattr(data, "duplicate_keys", ()):
        report.add(line, _join(where, key), DUPLICATE_KEY)


def check(
    data: Mapping[Any, Any],
    schema: type[T],
    report: Report,
    where: str = "",
    *,
    defaults: Mapping[str, Any] | None = None,
    unknown: Callable[[Any, Collection[str]], str] = unknown_key,
    duplicates: bool = True,
    keys: Callable[[Mapping[Any, Any]], None] | None = None,
    order: Literal["fields", "file"] = "fields",
    wording: Wording = WORDING,
) -> Checked[T]:
    """Check a mapping against a dataclass: duplicate keys, unknown keys, then each field in
    order. `where` prefixes the field names (`questions[3]`); `defaults` replaces the dataclass's
    defaults (and makes a required field optional); `unknown(key, field names)` words the
    unknown-key message; `duplicates=False` lets YAML's last value win silently. `keys(data)`
    checks which keys may stand together, what no type says (exactly one of a group, one key only
    beside another), and reports to the same report: it runs between the unknown keys and the
    fields, so a file's problems read from its keys to its values. `order="file"` checks the keys
    in the file's order instead, unknown ones among them, then the fields not given (for files
    whose keys come in any order: problems read top to bottom, `keys(data)` first, and a parser's
    `earlier` holds the keys above it); `wording` words the problems of values."""
    fields, defaults = _fields(schema), defaults or {}
    before = len(report.problems)
    line_of = getattr(data, "line_of", lambda key: None)
    if duplicates:
        report_duplicates(data, where, report)
    if order == "fields":
        for key in data:
            if key not in fields:
                report.add(line_of(key), _join(where, key), unknown(key, list(fields)))
    if keys is not None:
        keys(data)
    steps = [*data, *(n for n in fields if n not in data)] if order == "file" else list(fields)
    values: dict[str, Any] = {}
    invalid = set()
    for key in steps:
        if key not in fields:  # order="file": an unknown key, in its place
            report.add(line_of(key), _join(where, key), unknown(key, list(fields)))
            continue
        name, f = key, fields[key]
        here = _join(where, name)
        if name in defaults:
            default = defaults[name]
        else:
            default = _ABSENT if f.default is None else f.default()
        value = data.get(name, _ABSENT)
        if any(k in data for k in _unless(f)):
            values[name] = None if default is _ABSENT else default
            continue
        if value is _ABSENT or (value is None and default is _ABSENT and _null_is_missing(f)):
            if default is _ABSENT:
                message = f.required.message if f.required else "missing; this key is required"
                report.add(getattr(data, "line", None), here, message)
                invalid.add(name)
            values[name] = None if default is _ABSENT else default
            continue
        at = At(report, where, name, line_of(name), data, values)
        ok, typed = _value(value, f, at, wording)
        if not ok:
            invalid.add(name)
            typed = None if default is _ABSENT else default
        values[name] = typed
    values = {name: values[name] for name in fields}
    given = frozenset(k for k in fields if k in data)
    return Checked(schema, values, given, frozenset(invalid), tuple(report.problems[before:]))


def _null_is_missing(f: _Field) -> bool:
    """A required field given as null counts as missing, unless null is one of its values or a
    parser takes it."""
    return f.via is None and not matches_type(None, f.type)


def _unless(f: _Field) -> tuple[str, ...]:
    return f.required.unless if f.required else ()


def _value(value: Any, f: _Field, at: At, wording: Wording) -> tuple[bool, Any]:
    """(valid, the typed value) for one given value; problems go to the report."""
    if f.via is not None:
        before = len(at.report.problems)
        typed = f.via.parse(value, at)
        return len(at.report.problems) == before, typed
    kinds = [m for m in _members(f.type) if m is not type(None)]
    if len(kinds) == 1 and dataclasses.is_dataclass(kinds[0]) and value is not None:
        if not isinstance(value, dict):
            at.add(f"expected {f.expect or 'a mapping'}, got {value!r}")
            return False, None
        nested = check(value, kinds[0], at.report, at.field)
        return nested.ok, nested.build() if nested.ok else None
    wanted = f.expect or _qualified(wording.noun(f.type), f.qualifiers)
    if not matches_type(value, f.type) or not all(q.admits(value) for q in f.qualifiers):
        at.add(f"expected {wanted}, got {value!r}")
        return False, None
    for bounds in f.ranges:
        if not bounds.admits(value):
            at.add(
                f"expected {wanted}, got {value!r}"
                if f.expect
                else wording.out_of_range(bounds, value)
            )
            return False, None
    if f.choices is not None and value not in (choices := f.choices.choices()):
        at.add(
            f"expected {wanted}, got {value!r}"
            if f.expect
            else wording.not_a_choice(choices, value)
        )
        return False, None
    if isinstance(value, list) and any(typing.get_origin(k) is tuple for k in kinds):
        value = tuple(value)
    if kinds == [float] and isinstance(value, int):  # YAML's 2 where the field is a float
        value = float(value)
    return True, value


def _qualified(name: str, qualifiers: tuple[Qualifier, ...]) -> str:
    """With Positive, "an integer" reads "a positive integer"."""
    if not qualifiers:
        return name
    words = " ".join(q.word for q in qualifiers)
    article, _, rest = name.partition(" ")
    if article not in ("a", "an"):
        return f"{words} {name}"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words} {rest}"


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)
