"""The self-check of every run: a seeded sample of questions decoded again, one at a time.

Batch invariance is the runner's promise; this measures it on the run's own model, prompts and
card. Each sampled question is decoded alone (batch size 1, the same decoder) and compared with
what the batched run wrote: the same text, the same finish reason, the same number of tokens.
Under several processes each rank re-decodes its share of the one sample and rank 0 merges.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .distributed import World
from .models import LoadedModel
from .runner import Request, generate
from .sample import Sample, as_samples

DEFAULT_QUESTIONS = 8
SHOWN_CHARS = 200


@dataclass
class SelfCheck:
    questions: int = 0
    identical: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.identical == self.questions

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "identical": self.identical,
            "batch_size": 1,
            "mismatches": self.mismatches,
        }


def sample_keys(
    records: Iterable[Sample | dict[str, Any]], model: str, k: int
) -> list[tuple[str, str]]:
    """k (suite, id) pairs of `model`'s generated samples, the same for every rank and rerun."""
    keys = sorted((s.suite, s.id) for s in as_samples(records) if s.model == model and s.generated)
    return random.Random(f"harness-self-check:{model}").sample(keys, min(k, len(keys)))


def self_check(
    lm: LoadedModel,
    records: Iterable[Sample | dict[str, Any]],
    limits: dict[tuple[str, str], int],
    k: int,
    decoder: str,
    world: World | None = None,
) -> SelfCheck:
    """Decode `k` sampled questions of `lm` alone and compare with `records` (the run's
    samples); `limits` gives each (suite, id)'s max_new_tokens as the run used it."""
    world = world or World()
    samples = as_samples(records)
    by_key = {(s.suite, s.id): s for s in samples if s.model == lm.spec.name}
    chosen = sample_keys(samples, lm.spec.name, k)
    mine = chosen[world.rank :: world.size]
    found: list[dict[str, Any]] = []
    for suite, qid in mine:
        record = by_key[(suite, qid)]
        request = Request(qid, record.prompt, limits[(suite, qid)])
        [[alone]] = list(generate(lm, [request], batch_size=1, decoder=decoder))
        same = (alone.output, alone.finish_reason, alone.new_tokens) == (
            record.output,
            record.finish_reason,
            record.new_tokens,
        )
        found.append(
            {"suite": suite, "id": qid, "same": same}
            if same
            else {
                "suite": suite,
                "id": qid,
                "same": False,
                "batched": record.output[:SHOWN_CHARS],
                "alone": alone.output[:SHOWN_CHARS],
            }
        )
    merged = [item for part in world.gather(found) for item in part]
    return SelfCheck(
        questions=len(merged),
        identical=sum(item["same"] for item in merged),
        mismatches=[
            {k: v for k, v in item.items() if k != "same"} for item in merged if not item["same"]
        ],
    )
