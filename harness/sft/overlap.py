"""Contamination check: does training data contain the evaluation's questions?

Four kinds of match between a training row's user message and a suite prompt:
- exact: equal after folding case, whitespace and trailing punctuation;
- contained: the suite prompt (at least 6 units long) appears inside the training message;
- ngram: the two share a run of 13 units (words and punctuation marks), as in GPT-3's check;
- expression: the same arithmetic problem in other words ("17 + 42 = ?" and "Add 17 and 42."):
  the same operators over the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..scoring.correctness import normalise
from ..scoring.repetition import units
from ..suites import Suite

NGRAM = 13
MIN_CONTAINED_UNITS = 6
_INT = re.compile(r"\d+")
_OPS = (
    ("*", re.compile(r"\*|(?<=\d) ?x ?(?=\d)|\btimes\b|\bproduct\b|\bmultiply\b", re.I)),
    ("+", re.compile(r"\+|\bplus\b|\bsum\b|\badd\b", re.I)),
    ("-", re.compile(r"(?<=[\d ])-(?=[ \d])|\bminus\b|\bsubtract\b|\baway from\b", re.I)),
)


@dataclass(frozen=True)
class Overlap:
    row: str  # file:line (or dataset row) of the training example
    suite: str
    question: str  # the suite question's id
    kind: str  # exact | contained | ngram | expression
    text: str  # the training message


def expression_key(text: str) -> str | None:
    """Operators and numbers of an arithmetic prompt, order-free; None if it is not one."""
    numbers = _INT.findall(text)
    ops = sorted({op for op, pattern in _OPS if pattern.search(text)})
    if len(numbers) < 2 or not ops:
        return None
    return "".join(ops) + ":" + ",".join(sorted(numbers, key=int))


def _ngrams(seq: list[str]) -> set[tuple[str, ...]]:
    return {tuple(seq[i : i + NGRAM]) for i in range(len(seq) - NGRAM + 1)}


def find_overlaps(messages: list[tuple[str, str]], suites: list[Suite]) -> list[Overlap]:
    """Every (training row, suite question) pair that matches, by the first kind that fits."""
    exact: dict[str, list[tuple[str, str]]] = {}
    expr: dict[str, list[tuple[str, str]]] = {}
    grams: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    contained: list[tuple[str, str, str]] = []
    for suite in suites:
        for q in suite.questions:
            ref = (suite.name, q.id)
            for turn in q.user_turns():  # a multi-turn question's earlier user turns count too
                exact.setdefault(normalise(turn), []).append(ref)
                if (key := expression_key(turn)) is not None:
                    expr.setdefault(key, []).append(ref)
                seq = [u.casefold() for u in units(turn)]
                for g in _ngrams(seq):
                    grams.setdefault(g, []).append(ref)
                if len(seq) >= MIN_CONTAINED_UNITS:
                    contained.append((" " + " ".join(seq) + " ", *ref))
    found: dict[tuple[str, str, str], Overlap] = {}

    def hit(row: str, ref: tuple[str, str], kind: str, text: str) -> None:
        found.setdefault((row, *ref), Overlap(row, ref[0], ref[1], kind, text))

    for row, text in messages:
        for ref in exact.get(normalise(text), []):
            hit(row, ref, "exact", text)
        seq = [u.casefold() for u in units(text)]
        joined = " " + " ".join(seq) + " "
        for needle, suite, qid in contained:
            if needle in joined:
                hit(row, (suite, qid), "contained", text)
        for g in _ngrams(seq):
            for ref in grams.get(g, []):
                hit(row, ref, "ngram", text)
        if (key := expression_key(text)) is not None:
            for ref in expr.get(key, []):
                hit(row, ref, "expression", text)
    return list(found.values())
