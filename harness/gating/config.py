"""The rules file: gate-wide settings, and per-suite options checked against the registered rules.

`Rules` is the file's schema (harness/schema.py): every problem is collected and reported as
`file:line: field: problem`, so one run of the gate shows all that is wrong with a rules file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from ..errors import InputError, Problem
from ..schema import (
    At,
    Expect,
    Positive,
    Range,
    Report,
    Via,
    check,
    report_duplicates,
    unknown_key_listing,
)
from ..yamlio import MarkedDict, load_yaml
from .registry import SuiteRules, options


def _suite_rules(raw: Any, base: SuiteRules, where: str, report: Report) -> SuiteRules:
    """One suite's options over `base`, each checked against its rule's option."""
    if not isinstance(raw, dict):
        report.add(getattr(raw, "line", None), where, "expected a mapping of rules")
        return base
    report_duplicates(raw, where, report)
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
            report.add(line, f"{where}.{key}", problem)
    return base.replace(**values)


def _defaults(raw: Any, at: At) -> SuiteRules:
    return _suite_rules(raw, SuiteRules(), at.field, at.report)


def _per_suite(raw: Any, at: At) -> dict[str, SuiteRules]:
    """Each suite's options, over the file's defaults."""
    if not isinstance(raw, dict):
        at.add("expected a mapping of suite names to rules")
        return {}
    report_duplicates(raw, at.field, at.report)
    base = at.earlier["defaults"]
    return {str(k): _suite_rules(v, base, f"{at.field}.{k}", at.report) for k, v in raw.items()}


Significance = Annotated[float, Positive(), Range(high=1), Expect("a significance level in (0, 1]")]


@dataclass(frozen=True)
class Rules:
    """The gate's settings; each field is a key of the rules file."""

    alpha: Significance = 0.05
    # candidates the gate applies to (None: all)
    models: Annotated[tuple[str, ...] | None, Expect("a list of model names")] = None
    strict_power: bool = False  # a suite too small for its max_accuracy_drop fails the gate
    defaults: Annotated[SuiteRules, Via(_defaults)] = field(default_factory=SuiteRules)
    suites: Annotated[dict[str, SuiteRules], Via(_per_suite)] = field(default_factory=dict)

    def for_suite(self, name: str) -> SuiteRules:
        return self.suites.get(name, self.defaults)


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
    report = Report(file)
    # a repeated key is not refused here: the last one wins, as YAML itself has it
    rules = check(data, Rules, report, unknown=unknown_key_listing, duplicates=False)
    report.raise_if_any()
    built = rules.build()
    return replace(built, models=built.models or None)
