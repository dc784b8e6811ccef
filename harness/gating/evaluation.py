"""Pair the run's candidates with the baseline's models, then run every registered rule on each
suite both answered. Only the questions both sides have are compared: the evidence is paired."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..results import RunFolder, judged_by
from ..sample import as_samples
from .config import Rules
from .registry import RULES, SuitePair, Verdict


@dataclass(frozen=True, kw_only=True)
class Check(Verdict):
    """A rule's verdict, placed: the candidate, the baseline model it was paired with, the suite
    and the rule. Its `message` is always set (the rule's, or the evidence and the limit)."""

    model: str
    baseline_model: str
    suite: str
    rule: str


@dataclass
class GateResult:
    checks: list[Check]
    notes: list[str]
    warnings: list[str] = field(default_factory=list)  # rules a suite is too small to enforce

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _pairs(
    run_models: list[str],
    baseline_models: list[str],
    rules: Rules,
    candidate: str | None,
    baseline_model: str | None,
) -> list[tuple[str, str]]:
    if candidate or baseline_model:
        cand = candidate or baseline_model
        base = baseline_model or candidate
        if cand not in run_models:
            raise InputError(
                f"the run has no model '{cand}' (it has {', '.join(run_models)})",
                argument="candidate",
            )
        if base not in baseline_models:
            raise InputError(
                f"the baseline has no model '{base}' (it has {', '.join(baseline_models)})",
                argument="baseline_model",
            )
        return [(cand, base)]
    gated = [m for m in run_models if rules.models is None or m in rules.models]
    pairs = [(m, m) for m in gated if m in baseline_models]
    if not pairs:
        raise InputError(
            f"no model of the run ({', '.join(run_models)}) has a namesake in the baseline "
            f"({', '.join(baseline_models)}){' among the rules models' if rules.models else ''}; "
            "name the candidate and the baseline model to pair them",
            argument="candidate",
        )
    return pairs


def _refuse_other_judges(baseline: dict[str, Any], run: dict[str, Any]) -> None:
    """A judged suite's verdicts are comparable only under the same judge (name and weights)
    and the same rubric: refuse, naming both sides, where the run and the baseline differ."""

    def shown(entries: list[tuple[str, str, str]]) -> str:
        short = lambda h: h.split(":")[-1][:12]  # noqa: E731
        return " + ".join(f"judge {m} {short(f)}, rubric {short(r)}" for m, f, r in entries)

    differ = [
        (suite, judged_by(baseline, suite), judged_by(run, suite))
        for suite in run.get("suites", {})
        if suite in baseline["suites"] and judged_by(baseline, suite) != judged_by(run, suite)
    ]
    if differ:
        raise InputError(
            "judged differently from the baseline: "
            + "; ".join(
                f"{suite} (baseline: {shown(b) or 'no judge'}; run: {shown(r) or 'no judge'})"
                for suite, b, r in differ
            )
            + "; verdicts of different judges or rubrics are not comparable. Judge with the "
            "baseline's judge and rubric, or make a new baseline (harness baseline RUN_DIR)"
        )


def gate(
    baseline: dict[str, Any],
    run_dir: Path,
    rules: Rules,
    *,
    candidate: str | None = None,
    baseline_model: str | None = None,
) -> GateResult:
    folder = RunFolder(run_dir)
    if not folder.samples.exists() or not folder.run_json.exists():
        raise InputError(f"{run_dir}: not a run folder (needs run.json and samples.jsonl)")
    run = folder.read_run()
    _refuse_other_judges(baseline, run)
    samples = as_samples(folder.read_samples())
    run_models = list(dict.fromkeys(s.model for s in samples))
    notes: list[str] = []
    changed = [
        s
        for s, info in run.get("suites", {}).items()
        if s in baseline["suites"] and baseline["suites"][s]["hash"] != info["hash"]
    ]
    if changed:
        raise InputError(
            "suite changed under the baseline: "
            + ", ".join(
                f"{s} (baseline {baseline['suites'][s]['hash']}, run {run['suites'][s]['hash']})"
                for s in changed
            )
            + "; the scores are not comparable. If the change is intended, make a new baseline "
            "(harness baseline RUN_DIR) and commit it with the suite"
        )
    common_suites = [s for s in run.get("suites", {}) if s in baseline["suites"]]
    for s in run.get("suites", {}):
        if s not in baseline["suites"]:
            notes.append(f"suite '{s}' is not in the baseline: not gated")
    if not common_suites:
        raise InputError(
            f"the run's suites ({', '.join(run.get('suites', {}))}) are not in the "
            f"baseline ({', '.join(baseline['suites'])})"
        )
    result = GateResult([], notes)
    for cand, base_name in _pairs(
        run_models, list(baseline["models"]), rules, candidate, baseline_model
    ):
        b_model = baseline["models"][base_name]
        fp = run["models"].get(cand, {}).get("fingerprint")
        if fp and fp == b_model.get("fingerprint"):
            notes.append(f"{cand}: the same weights as the baseline's {base_name}")
        cur_q: dict[str, dict[str, dict[str, bool]]] = {}
        for s in samples:
            if s.model == cand:
                cur_q.setdefault(s.suite, {})[s.id] = s.outcome()
        for suite in common_suites:
            if suite not in cur_q or suite not in b_model["questions"]:
                notes.append(f"{cand}/{suite}: no samples on one side: not gated")
                continue
            pair = SuitePair(
                cand,
                base_name,
                suite,
                b_model["questions"][suite],
                cur_q[suite],
                rules.alpha,
                rules.strict_power,
                rules.for_suite(suite),
            )
            _judge(pair, result)
    return result


def _judge(pair: SuitePair, result: GateResult) -> None:
    """Every registered rule's verdict on one suite, added to the result."""
    n, n_base, n_cur = len(pair.keys), len(pair.baseline), len(pair.current)
    if n < n_cur or n < n_base:
        result.notes.append(
            f"{pair.model}/{pair.suite}: compared on the {n} questions both have "
            f"(baseline {n_base}, run {n_cur})"
        )
    for info in list(RULES.values()):
        verdict = info.judge(pair)
        if verdict is None:
            continue
        if verdict.warning:
            result.warnings.append(verdict.warning)
        result.checks.append(_check(pair, info.name, verdict))


def _check(pair: SuitePair, rule: str, v: Verdict) -> Check:
    verdict = {f.name: getattr(v, f.name) for f in fields(Verdict)}
    if v.message is None:
        verdict["message"] = f"{v.detail} (limit {v.limit})"
    return Check(
        **verdict, model=pair.model, baseline_model=pair.baseline_model, suite=pair.suite, rule=rule
    )
