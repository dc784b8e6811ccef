"""How often a judge model agrees with the keyword scorers of suites/general.yaml.

A model answers the general questions once, through suites/judged/general-judged.yaml (the same
ids, prompts, answers and limits, graded by a judge with a rubric); general.yaml's keyword,
pattern and length scorers then score exactly those answers, so both verdicts are on the same
text. Prints and writes (JSON) per model: the agreement rate, Cohen's kappa, a confusion table
(keywords right/wrong x judge C/I/unreadable) and up to 5 disagreements each way.

python benchmarks/judge_agreement.py [--models smollm2] [--judge JUDGE] [--limit N]
    [--device auto] [--batch-size N] [--out RUN_DIR] [--json FILE]
CPU check: python benchmarks/judge_agreement.py --models sft --judge sft --limit 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import harness
from harness.files import write_atomic
from harness.judging import with_judge
from harness.paths import SHIPPED
from harness.sample import Sample
from harness.scoring import score
from harness.suites import Question, load_suite

EXAMPLES = 5


def keyword_verdict(q: Question, s: Sample) -> bool:
    """general.yaml's verdict on the judged run's answer (errors are wrong, as in a run)."""
    result, _ = score(q.scorers, s.output, q.answer, s.finish_reason)
    return bool(result.correct) and s.error is None


def _example(s: Sample) -> dict[str, Any]:
    judged = s.judgement or {}
    return {
        "id": s.id,
        "question": s.question,
        "answer": s.output,
        "judge_output": judged.get("output"),
        "verdict": judged.get("verdict"),
    }


def agreement(samples: list[Sample], general: dict[str, Question]) -> dict[str, Any]:
    """Agreement between the judge's verdicts and the keywords', unreadable verdicts as wrong."""
    table = {k: {"C": 0, "I": 0, "unreadable": 0} for k in ("keywords right", "keywords wrong")}
    judge_only: list[dict[str, Any]] = []
    keywords_only: list[dict[str, Any]] = []
    same = 0
    for s in samples:
        kw = keyword_verdict(general[s.id], s)
        row = table["keywords right" if kw else "keywords wrong"]
        row["unreadable" if s.judge_unparsed else ("C" if s.correct else "I")] += 1
        same += kw == s.correct
        if s.correct and not kw and len(judge_only) < EXAMPLES:
            judge_only.append(_example(s))
        elif kw and not s.correct and len(keywords_only) < EXAMPLES:
            keywords_only.append(_example(s))
    n = len(samples)
    kw_rate = sum(table["keywords right"].values()) / n if n else 0.0
    judge_rate = sum(s.correct for s in samples) / n if n else 0.0
    chance = kw_rate * judge_rate + (1 - kw_rate) * (1 - judge_rate)
    observed = same / n if n else 0.0
    kappa = (observed - chance) / (1 - chance) if chance < 1 else None
    return {
        "n": n,
        "agreement": round(observed, 4),
        "cohen_kappa": None if kappa is None else round(kappa, 4),
        "keyword_accuracy": round(kw_rate, 4),
        "judge_accuracy": round(judge_rate, 4),
        "judge_unparsed": sum(s.judge_unparsed for s in samples),
        "confusion": table,
        "judge_right_keywords_wrong": judge_only,
        "keywords_right_judge_wrong": keywords_only,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2", help="the answering model(s), comma list")
    parser.add_argument("--judge", default=None, help="judge model (default: the suite's)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="default: OUT/judge_agreement.json")
    args = parser.parse_args()

    general_suite = load_suite(SHIPPED / "suites" / "general.yaml")
    judged = load_suite(SHIPPED / "suites" / "judged" / "general-judged.yaml")
    if args.judge:
        judged = with_judge(judged, args.judge)
    out = args.out or Path(tempfile.mkdtemp(prefix="judge-agreement-"))
    run = harness.evaluate(
        judged,
        args.models,
        out,
        limit=args.limit,
        device=args.device,
        batch_size=args.batch_size,
        self_check=0,
        report=False,
    )
    assert run is not None
    general = {q.id: q for q in general_suite.questions}
    result = {
        "run": str(run.path),
        "judges": run.info.get("judges", {}),
        "models": {
            m: agreement([s for s in run.samples if s.model == m], general) for m in run.models
        },
    }
    for model, r in result["models"].items():
        print(
            f"{model}: n={r['n']}, agreement {100 * r['agreement']:.1f}%, kappa "
            f"{r['cohen_kappa']}, keywords {100 * r['keyword_accuracy']:.1f}% right, judge "
            f"{100 * r['judge_accuracy']:.1f}% right, {r['judge_unparsed']} unreadable verdict(s)"
        )
        print(f"  {'':16}{'C':>6}{'I':>6}{'unreadable':>12}")
        for name, row in r["confusion"].items():
            print(f"  {name:16}{row['C']:>6}{row['I']:>6}{row['unreadable']:>12}")
        for label in ("judge_right_keywords_wrong", "keywords_right_judge_wrong"):
            for e in r[label]:
                print(f"  {label}: {e['id']}: {e['answer'][:60]!r} -> judge {e['verdict']}")
    path = args.json or out / "judge_agreement.json"
    write_atomic(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
