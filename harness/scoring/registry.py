"""The scorer registry: a scorer is one small function, registered with `@scorer`.

Its keyword-only parameters (with type hints and defaults) are the options a suite may set, so
validation, documentation and the call all come from the signature: adding a scorer is one
function in one place.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import Range
from ..schema import matches_type as matches_type  # scorer plugins import the type checks here
from ..schema import type_name as type_name
from .repetition import Repetition

REQUIRED = object()


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
