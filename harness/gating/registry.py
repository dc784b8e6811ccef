"""The gate's rule registry: a rule is one function, registered with `@rule`.

Its one keyword-only parameter (type hint and default) is the option a rules file may set under
the rule's name, so validation, the per-suite options and the call all come from the signature,
and the verdict it returns carries its own failure message: adding a rule touches one function.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from ..compare import Key, Paired, paired_outcomes
from ..schema import matches_type, type_name


@dataclass(frozen=True)
class Between:
    """Bounds of a numeric option (`Annotated[float, Between(0, 1, "fraction")]`); `noun`
    names the value in the error a rules file gets."""

    low: float
    high: float
    noun: str = "number"

    def admits(self, value: Any) -> bool:
        return matches_type(value, float) and self.low <= value <= self.high

    def problem(self, value: Any) -> str:
        return f"expected a {self.noun} between {self.low:g} and {self.high:g}, got {value!r}"


Fraction = Annotated[float, Between(0, 1, "fraction")]


@dataclass(frozen=True)
class Option:
    """A rule's setting as a rules file gives it: null is allowed only where the type says so
    (a rule that is off unless set)."""

    type: Any
    default: Any
    optional: bool = False
    between: Between | None = None

    def problem(self, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        if self.between is not None:
            return None if self.between.admits(value) else self.between.problem(value)
        if value is None or not matches_type(value, self.type):
            return f"expected {type_name(self.type)}, got {value!r}"
        return None


@dataclass(frozen=True)
class Verdict:
    """A rule's answer for one suite; the gate adds who and where to make it a `Check`."""

    baseline: float | None
    current: float
    limit: str
    passed: bool
    detail: str = ""  # the evidence: difference, interval, p-value
    broken: tuple[str, ...] = ()  # question ids right in the baseline, wrong now
    detectable: float | None = None  # the smallest drop the suite detects (80% power)
    message: str | None = None  # the failure line (default: the evidence and the limit)
    warning: str | None = None  # a rule the suite is too small to enforce


Outcome = Mapping[str, bool]  # correct, repeated, no_stop (Sample.outcome)


@dataclass(frozen=True)
class SuitePair:
    """What a rule judges: a candidate against its baseline model on one suite's questions."""

    model: str
    baseline_model: str
    suite: str
    baseline: Mapping[str, Outcome]  # question id -> outcome under the baseline model
    current: Mapping[str, Outcome]  # question id -> outcome under the candidate
    alpha: float
    strict_power: bool
    options: SuiteRules

    @cached_property
    def keys(self) -> list[str]:
        """The questions both sides answered: the paired evidence is only there."""
        return sorted(set(self.baseline) & set(self.current))

    @cached_property
    def paired(self) -> Paired:
        a: dict[Key, bool] = {(self.suite, k): self.baseline[k]["correct"] for k in self.keys}
        b: dict[Key, bool] = {(self.suite, k): self.current[k]["correct"] for k in self.keys}
        (p,) = paired_outcomes(a, b, self.baseline_model, self.model)
        return p

    @cached_property
    def detectable(self) -> float | None:
        return self.paired.detectable_drop(self.alpha)


Judge = Callable[..., Verdict | None]


@dataclass(frozen=True)
class RuleInfo:
    name: str
    fn: Judge
    option: Option | None  # None: the rule has no setting of its own
    parameter: str | None  # the fn's keyword the option is passed as
    doc: str

    def judge(self, pair: SuitePair) -> Verdict | None:
        """The rule's verdict, or None where it does not apply (an unset floor)."""
        if self.parameter is None:
            return self.fn(pair)
        return self.fn(pair, **{self.parameter: getattr(pair.options, self.name)})


RULES: dict[str, RuleInfo] = {}


def rule(name: str) -> Callable[[Judge], Judge]:
    """Register `fn(pair, *, option: T = default) -> Verdict | None` as the rule `name`; the
    option is set in rules files as `name: value`. Rules run in registration order."""

    def register(fn: Judge) -> Judge:
        if name in RULES:
            raise ValueError(f"a gate rule named '{name}' is registered already")
        if name.startswith("_") or hasattr(SuiteRules, name):
            raise ValueError(f"'{name}' cannot name a gate rule: SuiteRules has it already")
        hints = typing.get_type_hints(fn, include_extras=True)
        keyword = [p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
        if len(keyword) > 1:
            raise TypeError(f"gate rule '{name}': one option at most, got {len(keyword)}")
        option = parameter = None
        if keyword:
            (p,) = keyword
            if p.default is p.empty:
                raise TypeError(f"gate rule '{name}': option '{p.name}' needs a default")
            option, parameter = _option(hints.get(p.name, Any), p.default), p.name
            if (problem := option.problem(p.default)) is not None:
                raise TypeError(f"gate rule '{name}': default of '{p.name}': {problem}")
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        RULES[name] = RuleInfo(name, fn, option, parameter, doc)
        return fn

    return register


def unregister(name: str) -> None:
    del RULES[name]


def options() -> dict[str, Option]:
    """The settings a suite may have: one per registered rule that takes one."""
    return {name: info.option for name, info in RULES.items() if info.option is not None}


def _option(hint: Any, default: Any) -> Option:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    kinds = [m for m in members if m is not type(None)]
    if len(kinds) != 1:
        raise TypeError(f"a gate rule's option has one type (or it and None), got {hint}")
    (kind,) = kinds
    between = None
    if typing.get_origin(kind) is Annotated:
        kind, *extras = typing.get_args(kind)
        between = next((e for e in extras if isinstance(e, Between)), None)
    return Option(kind, default, len(kinds) < len(members), between)


class SuiteRules:
    """One suite's rule options. Its fields are the registered rules' options, looked up when
    read, so a rule registered after import (a plugin, a test) is settable like the built-ins."""

    __slots__ = ("_set",)

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(options()))
        if unknown:
            raise TypeError(f"SuiteRules: unknown rule option(s): {', '.join(unknown)}")
        object.__setattr__(self, "_set", dict(values))

    def __getattr__(self, name: str) -> Any:
        option = options().get(name) if not name.startswith("_") else None
        if option is None:
            raise AttributeError(f"SuiteRules has no option '{name}'")
        return self._set.get(name, option.default)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SuiteRules is immutable; use .replace()")

    def replace(self, **values: Any) -> SuiteRules:
        return SuiteRules(**{**self._set, **values})

    def items(self) -> Iterator[tuple[str, Any]]:
        for name, option in options().items():
            yield name, self._set.get(name, option.default)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SuiteRules) and dict(self.items()) == dict(other.items())

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return f"SuiteRules({', '.join(f'{k}={v!r}' for k, v in self.items())})"
