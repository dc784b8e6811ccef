"""Per model × suite (and per tag) aggregates of scored samples: what summary.json holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .sample import Sample, as_samples
from .stats import wilson

# A greedy choice won by less than this many logits is one a different kernel, card or
# library version may flip. bf16: every divergence between two bf16 decoders of the Qwen3-0.6B
# shape happened at a gap of at most 0.0499 (benchmarks/RESULTS.md); float16 is taken as bf16;
# float32's roundings are 2^16 times finer (not measured).
FRAGILE_MARGIN = {"bfloat16": 0.05, "float16": 0.05, "float32": 5e-4}


def fragile(records: Iterable[Sample | dict[str, Any]], dtypes: dict[str, str]) -> list[Sample]:
    """Samples whose greedy path came within the dtype's FRAGILE_MARGIN of another token,
    closest first; `dtypes` maps each model to the dtype it was decoded in."""
    found = [
        s
        for s in as_samples(records)
        if s.min_margin is not None
        and s.min_margin < FRAGILE_MARGIN.get(dtypes.get(s.model, ""), 0.05)
    ]
    return sorted(found, key=lambda s: (s.min_margin, s.model, s.suite, s.id))


def _rates(samples: list[Sample]) -> dict[str, Any]:
    """Accuracy counts errors as wrong; stop and repetition rates are over generated samples."""
    n = len(samples)
    ok = [s for s in samples if s.generated]
    correct = sum(1 for s in ok if s.correct)
    lo, hi = wilson(correct, n)
    gen = len(ok) or 1
    repeated = sum(s.repeated for s in ok)
    no_stop = sum(s.no_stop for s in ok)
    judged = [s for s in ok if s.judgement is not None]
    # only where a judge graded: keyword-scored suites keep the summary they always had
    judge = (
        {"judged": len(judged), "judge_unparsed": sum(s.judge_unparsed for s in judged)}
        if judged
        else {}
    )
    return {
        "n": n,
        "correct": correct,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "ci95": [round(lo, 4), round(hi, 4)],
        "repetition_rate": round(repeated / gen, 4),
        "repetition_ci95": [round(x, 4) for x in wilson(repeated, len(ok))],
        "no_stop_rate": round(no_stop / gen, 4),
        "no_stop_ci95": [round(x, 4) for x in wilson(no_stop, len(ok))],
        "mean_new_tokens": round(sum(s.new_tokens for s in ok) / gen, 2),
        "mean_seq_rep_4": round(sum(s.repetition.get("seq_rep_4", 0.0) for s in ok) / gen, 4),
        "errors": n - len(ok),
        **judge,
    }


def summarize(records: Iterable[Sample | dict[str, Any]]) -> dict[str, Any]:
    """{"models": {model: {suite: {n, accuracy, ci95, ..., "by_tag": {tag: {...}}}}}}."""
    groups: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in as_samples(records):
        groups[s.model][s.suite].append(s)
    out: dict[str, Any] = {}
    for model, suites in groups.items():
        out[model] = {}
        for suite, rows in suites.items():
            entry = _rates(rows)
            by_tag: dict[str, list[Sample]] = defaultdict(list)
            for s in rows:
                for tag in s.tags:
                    by_tag[tag].append(s)
            entry["by_tag"] = {t: _rates(by_tag[t]) for t in sorted(by_tag)}
            out[model][suite] = entry
    return {"models": out}
