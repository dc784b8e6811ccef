"""The judging pass: model-graded scorers reach their verdicts after generation.

A judge reads every judged answer of a run in one batched greedy pass through the same runner
(its own chat template, its own batches), after the judged models are done and freed, so a small
GPU holds one model at a time. The requests are put in a canonical order (model, suite, question)
before batching, so `harness score RUN` builds the same batches and reaches the same verdicts.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .chat import render
from .errors import InputError
from .logs import progress_bar, say
from .models import SOURCES, ModelSpec, load, load_registry, resolve
from .runner import Request, choose_decoder, generate
from .sample import Sample
from .scoring import SCORERS, Score
from .scoring.judge import Judge, judge_of
from .suites import Question, Suite

Verdicts = dict[int, dict[int, Score]]  # sample index -> scorer index -> the judged Score


def judges_of(q: Question) -> list[tuple[int, Judge]]:
    """The question's model-graded scorers, with their index among its scorers."""
    return [
        (i, judge_of(spec.params))
        for i, spec in enumerate(q.scorers)
        if SCORERS[spec.type].model_graded
    ]


def with_judge(suite: Suite, model: str) -> Suite:
    """The suite with every model-graded scorer's judge replaced by `model` (its hash changes
    with it, as the verdicts may)."""

    def swapped(q: Question) -> Question:
        scorers = tuple(
            replace(spec, params={**spec.params, "model": model})
            if SCORERS[spec.type].model_graded
            else spec
            for spec in q.scorers
        )
        return replace(q, scorers=scorers)

    return replace(suite, questions=tuple(swapped(q) for q in suite.questions))


def check_judges(suites: Iterable[Suite]) -> dict[str, ModelSpec]:
    """Resolve every judge model the suites name and locate its files, so that a missing judge
    stops the run before any generation rather than after it."""
    users: dict[str, list[str]] = {}
    for suite in suites:
        for q in suite.questions:
            for _, j in judges_of(q):
                users.setdefault(j.model, [])
                if suite.name not in users[j.model]:
                    users[j.model].append(suite.name)
    if not users:
        return {}
    registry = load_registry()
    specs = {}
    for ref, names in users.items():
        try:
            spec = resolve(ref, registry)
            SOURCES[spec.source](spec)
        except InputError as exc:
            raise InputError(
                f"the judge model '{ref}' of suite {', '.join(names)}: {exc.message}"
            ) from None
        specs[ref] = spec
    return specs


@dataclass(frozen=True)
class _Job:
    sample: int  # index into the run's samples
    scorer: int  # the judge's index among the question's scorers
    judge: Judge
    text: str  # the filled rubric, before the judge's chat template


def _question_text(s: Sample) -> str:
    """The question as the judge reads it: earlier turns of a conversation first."""
    turns = [f"{role}: {content}" for role, content in s.history]
    return "\n".join([*turns, f"user: {s.question}"]) if turns else s.question


def judge_pass(
    samples: list[Sample],
    questions: dict[tuple[str, str], Question],
    specs: dict[str, ModelSpec],
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | None = None,
    decoder: str = "auto",
    trust_remote_code: bool = False,
    log: Callable[[str], None] = say,
    progress: bool = True,
) -> tuple[Verdicts, dict[str, list[dict[str, Any]]]]:
    """Judge every judged sample; returns the verdicts and what run.json records per suite
    (`judges`: the judge model, its fingerprint and decoding, the rubric's hash)."""
    jobs: dict[str, list[_Job]] = {}
    verdicts: Verdicts = {}
    order = sorted(range(len(samples)), key=lambda i: samples[i].key)
    for i in order:
        s = samples[i]
        for k, j in judges_of(questions[(s.suite, s.id)]):
            if s.error is not None:  # nothing to judge; wrong already, not an unread verdict
                skipped = {"output": None, "verdict": None, "parsed": False, "skipped": s.error}
                verdicts.setdefault(i, {})[k] = Score(False, 0.0, skipped)
                continue
            text = j.prompt(_question_text(s), s.answer, s.output)
            jobs.setdefault(j.model, []).append(_Job(i, k, j, text))
    used: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for ref, todo in jobs.items():
        log(f"judging {len(todo)} answer(s) with {ref}")
        lm = load(specs[ref], device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        choice = choose_decoder(lm, decoder)
        requests = [
            Request(str(n), render(lm.tokenizer, job.text), job.judge.max_new_tokens)
            for n, job in enumerate(todo)
        ]
        bar = progress_bar(len(requests), f"judge {ref}", progress)
        unread = 0
        for batch in generate(
            lm, requests, batch_size=batch_size, decoder=choice.name, progress=bar.update
        ):
            for g in batch:
                job = todo[int(g.id)]
                score = job.judge.verdict(g.output, g.finish_reason, g.error)
                unread += not score.detail["parsed"]
                verdicts.setdefault(job.sample, {})[job.scorer] = score
        bar.close()
        log(f"  {ref}: {len(todo) - unread} verdict(s) read, {unread} unreadable (scored wrong)")
        described = {
            "model": ref,
            "fingerprint": lm.fingerprint,
            "source": lm.spec.source,
            "location": lm.spec.location,
            "dtype": lm.dtype,
            "device": lm.device,
            "decoding": choice.to_dict(),
        }
        for job in todo:
            suite = samples[job.sample].suite
            entry = used.setdefault(suite, {}).setdefault(
                (ref, job.judge.rubric_hash),
                {
                    **described,
                    "rubric_hash": job.judge.rubric_hash,
                    "rubric_file": job.judge.rubric_file,
                    "grade_pattern": job.judge.grade_pattern,
                    "scale": job.judge.scale,
                    "max_new_tokens": job.judge.max_new_tokens,
                    "samples": 0,
                },
            )
            entry["samples"] += 1
        del lm
        gc.collect()
    return verdicts, {suite: list(entries.values()) for suite, entries in used.items()}
