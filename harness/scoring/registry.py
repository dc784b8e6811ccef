"""The scorer registry: a scorer is one small function, registered with `@scorer`.

Its keyword-only parameters (with type hints and defaults) are the options a suite may set, so
validation, documentation and the call all come from the signature: adding a scorer is one
function in one place.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .repetition import Repetition

REQUIRED = object()


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric option, given as `Annotated[float, Range(0)]` in a scorer's
    signature; the suite validator refuses values outside them."""

    low: float | None = None
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            if self.high is None:
                return f"expected a number >= {self.low}, got {value!r}"
            if self.low is None:
                return f"expected a number <= {self.high}, got {value!r}"
            return f"expected a number from {self.low} to {self.high}, got {value!r}"
        return None


@dataclass(frozen=True)
class Candidate:
    """What a scorer sees of one sample."""

    output: str
    answer: Any
    finish_reason: str
    repetition: Repetition


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer named in a suite, with its options (already validated against the signature)."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.params}


@dataclass(frozen=True)
class Score:
    correct: bool
    value: float
    detail: dict[str, Any] = field(default_factory=dict)


class OptionError(ValueError):
    """A scorer option that passed its type check but cannot be used (a `prepare` hook raises
    it; the suite validator reports it at the option's line)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


# prepare(options, the suite file's folder) -> the options to keep (e.g. a file read in)
Prepare = Callable[[dict[str, Any], Path], dict[str, Any]]


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    fn: Callable[..., Score]
    params: dict[str, tuple[Any, Any]]  # name -> (type, default or REQUIRED)
    ranges: dict[str, Range]  # name -> the bounds of a numeric option
    needs_answer: bool
    answer_type: Any
    doc: str
    # checks beyond types, and options completed from files, when the suite is loaded
    prepare: Prepare | None = None
    # the verdict comes from a model in a batched pass after generation (harness/judging.py);
    # the per-sample function only marks the sample as waiting for it
    model_graded: bool = False

    def __call__(self, candidate: Candidate, **params: Any) -> Score:
        return self.fn(candidate, **params)


SCORERS: dict[str, ScorerInfo] = {}


def scorer(
    name: str,
    *,
    needs_answer: bool = False,
    answer_type: Any = None,
    prepare: Prepare | None = None,
    model_graded: bool = False,
) -> Callable[[Callable[..., Score]], Callable[..., Score]]:
    """Register `fn(candidate, *, option=default, ...) -> Score` under `name`."""

    def register(fn: Callable[..., Score]) -> Callable[..., Score]:
        hints = typing.get_type_hints(fn, include_extras=True)
        params, ranges = {}, {}
        for p in inspect.signature(fn).parameters.values():
            if p.kind is not p.KEYWORD_ONLY:
                continue
            hint = hints.get(p.name, Any)
            if typing.get_origin(hint) is typing.Annotated:
                hint, *extras = typing.get_args(hint)
                bounds = [e for e in extras if isinstance(e, Range)]
                if bounds:
                    ranges[p.name] = bounds[0]
            params[p.name] = (hint, REQUIRED if p.default is p.empty else p.default)
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        SCORERS[name] = ScorerInfo(
            name, fn, params, ranges, needs_answer, answer_type, doc, prepare, model_graded
        )
        return fn

    return register


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
    """A small structural type check for scorer options and answers (YAML gives plain values)."""
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
