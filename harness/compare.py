"""Paired comparison of two models on the same questions: what changed, question by question."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .stats import mcnemar_exact


@dataclass(frozen=True)
class Paired:
    suite: str
    a: str
    b: str
    n: int
    accuracy_a: float
    accuracy_b: float
    fixed: int  # wrong under a, right under b
    broken: int  # right under a, wrong under b
    both_right: int
    both_wrong: int
    p_value: float  # exact McNemar
    only_in_one: int  # questions answered by one model only (not compared)

    @property
    def difference(self) -> float:
        return self.accuracy_b - self.accuracy_a


def paired(records: list[dict[str, Any]], a: str, b: str) -> list[Paired]:
    """Per suite, model `b` against model `a` on the questions both answered."""
    by_key: dict[tuple[str, str], dict[str, bool]] = {}
    for r in records:
        if r["model"] in (a, b):
            by_key.setdefault((r["suite"], r["id"]), {})[r["model"]] = bool(r["correct"])
    out = []
    for suite in sorted({s for s, _ in by_key}):
        pairs = [v for (s, _), v in by_key.items() if s == suite and len(v) == 2]
        single = sum(1 for (s, _), v in by_key.items() if s == suite and len(v) == 1)
        fixed = sum(1 for v in pairs if not v[a] and v[b])
        broken = sum(1 for v in pairs if v[a] and not v[b])
        right = sum(1 for v in pairs if v[a] and v[b])
        n = len(pairs)
        out.append(
            Paired(
                suite,
                a,
                b,
                n,
                accuracy_a=(right + broken) / n if n else 0.0,
                accuracy_b=(right + fixed) / n if n else 0.0,
                fixed=fixed,
                broken=broken,
                both_right=right,
                both_wrong=n - fixed - broken - right,
                p_value=mcnemar_exact(fixed, broken),
                only_in_one=single,
            )
        )
    return out
