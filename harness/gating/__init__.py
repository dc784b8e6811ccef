"""`harness gate`: fail CI when a model got worse than the committed baseline, on paired evidence.

A raw "accuracy fell one point" is noise on a hundred questions. The gate compares the same
questions under the baseline and the candidate: an accuracy drop counts only when McNemar's exact
test on the flipped questions is significant (p < alpha) *and* larger than the allowed drop.
Floors (minimum accuracy) and ceilings on the rise of the repetition and no-stop rates are checked
as plain rates. Exit codes: 0 nothing regressed, 1 something did, 2 bad input.

registry.py holds `@rule` and builtin.py the rules it ships with; config.py reads rules files,
evaluation.py pairs models and runs the rules, output.py writes the table and JUnit XML.
"""

from __future__ import annotations

from . import builtin  # noqa: F401  (registers the built-in rules)
from .config import Rules, load_rules
from .evaluation import Check, GateResult, gate
from .output import format_result, write_junit
from .registry import (
    RULES,
    Between,
    Fraction,
    RuleInfo,
    SuitePair,
    SuiteRules,
    Verdict,
    rule,
    unregister,
)

__all__ = [
    "RULES",
    "Between",
    "Check",
    "Fraction",
    "GateResult",
    "RuleInfo",
    "Rules",
    "SuitePair",
    "SuiteRules",
    "Verdict",
    "format_result",
    "gate",
    "load_rules",
    "rule",
    "unregister",
    "write_junit",
]
