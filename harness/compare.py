"""Paired comparison of two models on the same questions: what changed, question by question.

Two models answered the same questions, so their accuracies are not independent samples: the
evidence is in the questions whose outcome flipped. Each comparison reports the flips (fixed,
broken), McNemar's exact test on them, and a paired-bootstrap interval of the difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sample import Sample, as_samples
from .stats import mcnemar_exact, paired_bootstrap

Key = tuple[str, str]  # (suite, question id)


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
    ci95: tuple[float, float]  # paired bootstrap interval of accuracy_b - accuracy_a
    only_a: list[str] = field(default_factory=list)  # question ids only a answered
    only_b: list[str] = field(default_factory=list)

    @property
    def difference(self) -> float:
        return self.accuracy_b - self.accuracy_a

    def detectable_drop(self, alpha: float = 0.05) -> float | None:
        """The smallest drop this comparison detects with 80% power, at its observed share of
        flipping questions (harness/power.py); None when it can detect none."""
        from .power import min_detectable_drop

        return min_detectable_drop(
            self.n, (self.fixed + self.broken) / self.n if self.n else 0, alpha
        )


def outcomes(records: Iterable[Sample | dict[str, Any]], model: str) -> dict[Key, bool]:
    return {(s.suite, s.id): s.correct for s in as_samples(records) if s.model == model}


def paired_outcomes(
    a: dict[Key, bool], b: dict[Key, bool], name_a: str, name_b: str
) -> list[Paired]:
    """Per suite, b against a on the questions both answered; the rest are listed, not dropped."""
    out = []
    for suite in sorted({s for s, _ in a} | {s for s, _ in b}):
        keys_a = {k for k in a if k[0] == suite}
        keys_b = {k for k in b if k[0] == suite}
        both = sorted(keys_a & keys_b)
        fixed = sum(1 for k in both if not a[k] and b[k])
        broken = sum(1 for k in both if a[k] and not b[k])
        right = sum(1 for k in both if a[k] and b[k])
        n = len(both)
        out.append(
            Paired(
                suite,
                name_a,
                name_b,
                n,
                accuracy_a=(right + broken) / n if n else 0.0,
                accuracy_b=(right + fixed) / n if n else 0.0,
                fixed=fixed,
                broken=broken,
                both_right=right,
                both_wrong=n - fixed - broken - right,
                p_value=mcnemar_exact(fixed, broken),
                ci95=paired_bootstrap(fixed, broken, n),
                only_a=sorted(k[1] for k in keys_a - keys_b),
                only_b=sorted(k[1] for k in keys_b - keys_a),
            )
        )
    return out


def paired(records: Iterable[Sample | dict[str, Any]], a: str, b: str) -> list[Paired]:
    """Model b against model a within one run."""
    samples = as_samples(records)
    return paired_outcomes(outcomes(samples, a), outcomes(samples, b), a, b)


def model_pairs(models: list[str]) -> list[tuple[str, str]]:
    """Every pair in run order: (base, sft), (base, other), (sft, other)."""
    return [(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]


def compare_runs(
    run_a: Path, run_b: Path, model_a: str | None = None, model_b: str | None = None
) -> dict[str, Any]:
    """The same comparison across two run folders, matched by suite and question id."""
    from .errors import InputError
    from .results import RunFolder, judged_by

    folders = RunFolder(run_a), RunFolder(run_b)
    for f in folders:
        if not f.samples.exists():
            raise InputError(f"{f.path}: not a run folder (no samples.jsonl)")
    recs_a, recs_b = (as_samples(f.read_samples()) for f in folders)
    models_a = list(dict.fromkeys(s.model for s in recs_a))
    models_b = list(dict.fromkeys(s.model for s in recs_b))
    if model_a or model_b:
        pairs = [(model_a or model_b, model_b or model_a)]
    elif common := [m for m in models_a if m in models_b]:
        pairs = [(m, m) for m in common]
    elif len(models_a) == len(models_b) == 1:
        pairs = [(models_a[0], models_b[0])]
    else:
        raise InputError(
            f"the runs share no model name ({', '.join(models_a)} vs "
            f"{', '.join(models_b)}); name the two models to compare",
            argument="model_a",
        )
    for a, b in pairs:
        if a not in models_a:
            raise InputError(f"{run_a}: no model '{a}' (it has {', '.join(models_a)})")
        if b not in models_b:
            raise InputError(f"{run_b}: no model '{b}' (it has {', '.join(models_b)})")
    notes = []
    suites_a = folders[0].read_run().get("suites", {}) if folders[0].run_json.exists() else {}
    suites_b = folders[1].read_run().get("suites", {}) if folders[1].run_json.exists() else {}
    run_a, run_b = (f.read_run() if f.run_json.exists() else {} for f in folders)
    for name in sorted(set(suites_a) & set(suites_b)):
        # the same weights and rubric under another name are the same judge
        if [j[1:] for j in judged_by(run_a, name)] != [j[1:] for j in judged_by(run_b, name)]:
            notes.append(
                f"suite '{name}' was judged by different judges or rubrics in the two runs: "
                "its verdicts are not comparable"
            )
    for name in sorted(set(suites_a) & set(suites_b)):
        if suites_a[name]["hash"] != suites_b[name]["hash"]:
            notes.append(
                f"suite '{name}' changed between the runs "
                f"({suites_a[name]['hash']} -> {suites_b[name]['hash']}); "
                "compared on the question ids both have"
            )
    return {
        "pairs": {
            (a, b): paired_outcomes(outcomes(recs_a, a), outcomes(recs_b, b), a, b)
            for a, b in pairs
        },
        "notes": notes,
    }
