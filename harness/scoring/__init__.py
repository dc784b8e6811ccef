"""Scoring: correctness by the suite's scorers, repetition on every sample."""

from __future__ import annotations

from typing import Any

from . import correctness  # noqa: F401  (registers the built-in scorers)
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
    specs: tuple[ScorerSpec, ...], output: str, answer: Any, finish_reason: str
) -> tuple[Score, Repetition]:
    """Apply every scorer of a question (all must pass; the value is their mean)."""
    repetition = measure(output)
    candidate = Candidate(output, answer, finish_reason, repetition)
    results = [(spec.type, SCORERS[spec.type](candidate, **spec.params)) for spec in specs]
    if len(results) == 1:
        return results[0][1], repetition
    detail = {name: s.detail for name, s in results}
    value = sum(s.value for _, s in results) / len(results)
    return Score(all(s.correct for _, s in results), value, detail), repetition
