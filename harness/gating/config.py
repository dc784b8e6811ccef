"""The rules file: gate-wide settings, and per-suite options checked against the registered rules.

Every problem is collected and reported as `file:line: field: problem`, so one run of the gate
shows all that is wrong with a rules file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem
from ..yamlio import MarkedDict, load_yaml
from .registry import SuiteRules, options

SETTINGS = ("alpha", "models", "strict_power", "defaults", "suites")


@dataclass(frozen=True)
class Rules:
    alpha: float = 0.05
    models: tuple[str, ...] | None = None  # candidates the gate applies to (None: all)
    strict_power: bool = False  # a suite too small for its max_accuracy_drop fails the gate
    defaults: SuiteRules = field(default_factory=SuiteRules)
    suites: dict[str, SuiteRules] = field(default_factory=dict)

    def for_suite(self, name: str) -> SuiteRules:
        return self.suites.get(name, self.defaults)


def _rate(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _suite_rules(
    raw: Any, base: SuiteRules, where: str, file: str, problems: list[Problem]
) -> SuiteRules:
    if not isinstance(raw, dict):
        problems.append(
            Problem(file, "expected a mapping of rules", getattr(raw, "line", None), where)
        )
        return base
    known = options()
    values = {}
    for key, value in raw.items():
        line = raw.line_of(key) if isinstance(raw, MarkedDict) else None
        if key not in known:
            problem = f"unknown rule (rules: {', '.join(sorted(known))})"
        else:
            problem = known[key].problem(value)
        if problem is None:
            values[key] = value
        else:
            problems.append(Problem(file, problem, line, f"{where}.{key}"))
    return base.replace(**values)


def _settings(data: MarkedDict, file: str, problems: list[Problem]) -> None:
    """The gate-wide keys: known ones only, each of its type."""

    def bad(key: str, message: str) -> None:
        problems.append(Problem(file, message, data.line_of(key), key))

    for key in data:
        if key not in SETTINGS:
            bad(str(key), f"unknown key (known: {', '.join(SETTINGS)})")
    alpha = data.get("alpha", 0.05)
    if not _rate(alpha) or alpha == 0:
        bad("alpha", f"expected a significance level in (0, 1], got {alpha!r}")
    models = data.get("models")
    if models is not None and not (
        isinstance(models, list) and all(isinstance(m, str) for m in models)
    ):
        bad("models", f"expected a list of model names, got {models!r}")
    strict = data.get("strict_power", False)
    if not isinstance(strict, bool):
        bad("strict_power", f"expected true or false, got {strict!r}")


def load_rules(path: Path | None) -> Rules:
    """Rules YAML: alpha, models, defaults: {...}, suites: {name: {...}}; everything optional."""
    if path is None:
        return Rules()
    data = load_yaml(path)
    file = str(path)
    if data is None:
        return Rules()
    if not isinstance(data, MarkedDict):
        raise InputError(
            problems=[Problem(file, "expected a mapping (alpha, models, defaults, suites)", 1)]
        )
    problems: list[Problem] = []
    _settings(data, file, problems)
    defaults = _suite_rules(data.get("defaults", {}), SuiteRules(), "defaults", file, problems)
    suites = {}
    raw_suites = data.get("suites", {})
    if not isinstance(raw_suites, dict):
        problems.append(
            Problem(
                file, "expected a mapping of suite names to rules", data.line_of("suites"), "suites"
            )
        )
        raw_suites = {}
    for name, raw in raw_suites.items():
        suites[str(name)] = _suite_rules(raw, defaults, f"suites.{name}", file, problems)
    if problems:
        raise InputError(problems=problems)
    models = data.get("models")
    return Rules(
        alpha=float(data.get("alpha", 0.05)),
        models=tuple(models) if models else None,
        strict_power=bool(data.get("strict_power", False)),
        defaults=defaults,
        suites=suites,
    )
