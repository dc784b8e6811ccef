"""Scoring: correctness by the suite's scorers, repetition on every sample.

registry.py holds `@scorer` (a scorer is one function; its keyword options, typed, are what a
suite may set), correctness.py the shipped scorers, judge.py the model-graded one's options and
verdicts, repetition.py the n-gram, tail-loop and no-stop measures every sample gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import correctness, judge  # noqa: F401  (register the built-in scorers)
from .registry import SCORERS, Candidate, Score, ScorerInfo, ScorerSpec, scorer
from .repetition import Repetition, TailLoop, measure

__all__ = [
    "SCORERS",
    "Candidate",
    "Repetition",
    "Score",
    "ScorerInfo",
    "ScorerSpec",
    "TailLoop",
    "measure",
    "score",
    "scorer",
]


def score(
    specs: tuple[ScorerSpec, ...],
    output: str,
    answer: Any,
    finish_reason: str,
    verdicts: Mapping[int, Score] | None = None,
) -> tuple[Score, Repetition]:
    """Apply every scorer of a question (all must pass; the value is their mean).

    `verdicts` holds the results of model-graded scorers by their index in `specs` (the judging
    pass reaches them); without one such a scorer's result says it is pending. A model-graded
    scorer's detail is always under its name (`detail["judge"]`), so readers find it in one place.
    """
    repetition = measure(output)
    candidate = Candidate(output, answer, finish_reason, repetition)
    verdicts = verdicts or {}
    results = [
        (spec.type, verdicts[i] if i in verdicts else SCORERS[spec.type](candidate, **spec.params))
        for i, spec in enumerate(specs)
    ]
    if len(results) == 1 and not SCORERS[specs[0].type].model_graded:
        return results[0][1], repetition
    detail = {name: s.detail for name, s in results}
    value = sum(s.value for _, s in results) / len(results)
    return Score(all(s.correct for _, s in results), value, detail), repetition
