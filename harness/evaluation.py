"""`harness run`: suites × models → a run folder (run.json, samples.jsonl, summary.json).

The one place that wires the stages together: load a model, render its prompts, decode batch
by batch, score each sample as its batch lands, append; then let the judges of model-graded
scorers read the answers (harness/judging.py), and summarise at the end. A rerun with
`resume=True` skips what samples.jsonl already holds, after checking that the suites, models and
decode settings are the ones the run started with.
"""

from __future__ import annotations

import datetime as dt
import gc
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import __version__
from .adapters import SharedBases
from .chat import render
from .distributed import World, world_from_env
from .env import host, versions
from .errors import InputError, RunExists
from .judging import Verdicts, check_judges, judge_pass
from .logs import LOG, progress_bar, say
from .models import DTYPES, LoadedModel, ModelSpec, evaluation_mode
from .results import RunFolder, key_of, read_json
from .runner import DECODERS, Generation, Request, choose_decoder, generate
from .sample import Sample, as_samples
from .scoring import Score, score
from .selfcheck import DEFAULT_QUESTIONS, self_check
from .suites import Question, Suite, load_suite
from .summarize import summarize

_COUNTS = {
    "batch_size": "a positive integer or None",
    "max_new_tokens": "a positive integer or None",
    "limit": "a positive integer or None",
    "self_check": "0 or a positive integer",
}


@dataclass(frozen=True)
class DecodeSettings:
    batch_size: int | None = None  # None: auto
    max_new_tokens: int | None = None  # None: each question's own
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None  # first N questions of each suite
    decoder: str = "auto"  # auto: batch-invariant kernels on a GPU, generate() on CPU
    self_check: int = DEFAULT_QUESTIONS  # questions per model decoded again one at a time

    def __post_init__(self) -> None:
        """Refuse what the command line's choices refuse: a library caller's typo must not run
        another decoder, or decode nothing, and be written into run.json as chosen."""
        for name, allowed in {"decoder": DECODERS, "dtype": DTYPES}.items():
            if (got := getattr(self, name)) not in allowed:
                raise InputError(
                    f"expected one of {', '.join(allowed)}, got {got!r}", argument=name
                )
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise InputError(
                f"expected auto, cpu, cuda or cuda:N, got {self.device!r}", argument="device"
            )
        for name, expected in _COUNTS.items():
            got = getattr(self, name)
            if got is None and name != "self_check":
                continue
            low = 0 if name == "self_check" else 1
            if not isinstance(got, int) or isinstance(got, bool) or got < low:
                raise InputError(f"expected {expected}, got {got!r}", argument=name)

    def to_dict(self) -> dict[str, Any]:
        """The settings that decide the outputs (a resume must keep them)."""
        return {
            "strategy": "greedy",
            "batch_size": self.batch_size or "auto",
            "max_new_tokens": self.max_new_tokens or "per question",
            "device": self.device,
            "dtype": self.dtype,
            "limit": self.limit,
            "decoder": self.decoder,
            "enable_thinking": False,
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def make_record(
    model: str,
    suite: Suite,
    q: Question,
    prompt: str,
    gen: Generation,
    verdicts: dict[int, Score] | None = None,
) -> dict:
    """One line of samples.jsonl: the question, what the model said, and how it scored
    (`verdicts`: the judges' results for the question's model-graded scorers, by index)."""
    result, repetition = score(q.scorers, gen.output, q.answer, gen.finish_reason, verdicts)
    return Sample(
        model=model,
        suite=suite.name,
        id=q.id,
        question=q.prompt,
        system=q.system,
        history=q.history,
        prompt=prompt,
        answer=q.answer,
        tags=q.tags,
        output=gen.output,
        finish_reason=gen.finish_reason,
        new_tokens=gen.new_tokens,
        prompt_tokens=gen.prompt_tokens,
        correct=bool(result.correct) and gen.error is None,
        score=result.value if gen.error is None else 0.0,
        scorer=tuple(s.to_dict() for s in q.scorers),
        detail=result.detail,
        repetition=repetition.to_dict(),
        error=gen.error,
        min_margin=gen.min_margin,
    ).to_dict()


def _guard(run: dict[str, Any], key: str, expected: Any, what: str) -> None:
    if run.get(key) != expected:
        raise InputError(
            f"cannot resume {what}: this run was started with {key} = {run.get(key)!r}, "
            f"now {expected!r}; start a new run in another folder instead of mixing results"
        )


def _start(folder: RunFolder, suites: list[Suite], settings: DecodeSettings, resume: bool) -> dict:
    suites_info = {
        s.name: {"path": s.path, "hash": s.hash, "questions": len(s.questions)} for s in suites
    }
    if folder.exists():
        if not resume:
            raise RunExists(folder.path)
        run = folder.read_run()
        before = {name: info["hash"] for name, info in run.get("suites", {}).items()}
        now = {name: info["hash"] for name, info in suites_info.items()}
        _guard({"suites": before}, "suites", now, f"{folder.path} (the suites changed)")
        _guard(run, "decode", settings.to_dict(), f"{folder.path} (the decode settings changed)")
        removed = folder.repair()
        run.setdefault("events", []).append(
            {"time": _now(), "event": "resumed", "torn_bytes_dropped": removed}
        )
    else:
        run = {
            "harness_version": __version__,
            "created": _now(),
            "status": "running",
            "command": " ".join(["harness", *sys.argv[1:]]),
            "versions": versions(),
            "host": host(),
            "decode": settings.to_dict(),
            "suites": suites_info,
            "models": {},
            "events": [],
        }
    run["status"] = "running"
    folder.write_run(run)
    return run


def evaluate(
    suites: list[Suite],
    models: list[ModelSpec | LoadedModel],
    out: Path,
    settings: DecodeSettings = DecodeSettings(),
    *,
    resume: bool = False,
    trust_remote_code: bool = False,
    log: Callable[[str], None] = say,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Run every model over every suite into `out`; returns the summary (None on ranks > 0).

    A model is a spec to load, or one already in memory (`models.from_memory`), which is
    evaluated as it is and handed back in the mode it came in. Under torchrun / accelerate
    launch every rank decodes its share of each suite's batches into its own shard; rank 0
    alone writes run.json, merges the shards and summarises.
    """
    world = world_from_env()
    judges = check_judges(suites)  # a missing judge fails here, before any generation
    folder = RunFolder(out)
    if world.main:
        run = _start(folder, suites, settings, resume)
    world.barrier()
    if not world.main:
        run = folder.read_run()
    mine = RunFolder(out, shard=world.rank) if world.size > 1 else folder
    mine.repair()
    done = {key_of(r) for r in folder.read_all_samples(shared=True)}
    device = world.device(settings.device)
    specs = [m for m in models if isinstance(m, ModelSpec)]
    loader = SharedBases(
        specs, device=device, dtype=settings.dtype, trust_remote_code=trust_remote_code
    )
    for entry in models:
        if isinstance(entry, LoadedModel):
            lm, spec = entry, entry.spec
        else:
            spec, lm = entry, loader.load(entry, log)
        with lm.decoding():
            _evaluate_model(lm, suites, folder, mine, run, settings, done, log, progress, world)
        if not isinstance(entry, LoadedModel):  # loaded here: free it before the next
            loader.done(spec)
            del lm
            gc.collect()
    world.barrier()
    if not world.main:
        return None
    folder.merge_shards([_name(m) for m in models], [s.name for s in suites])
    if judges:  # the judged models are freed: the judges load one at a time
        questions = {(s.name, q.id): (s, q) for s in suites for q in s.questions}
        records = _judged(
            folder,
            run,
            folder.read_samples(),
            questions,
            judges,
            settings,
            device,
            trust_remote_code,
            log,
            progress,
        )
        summary = summarize(records)
    else:
        summary = _summary(folder, {_name(m) for m in models})
    summary["run"] = str(folder.path)
    folder.write_summary(summary)
    run["status"] = "complete"
    run["finished"] = _now()
    if world.size > 1:
        run.setdefault("events", []).append({"time": _now(), "event": "ranks", "ranks": world.size})
    folder.write_run(run)
    return summary


def _evaluate_model(
    lm: LoadedModel,
    suites: list[Suite],
    folder: RunFolder,
    mine: RunFolder,
    run: dict[str, Any],
    settings: DecodeSettings,
    done: set[tuple[str, str, str]],
    log: Callable[[str], None],
    progress: bool,
    world: World,
) -> None:
    """Decode and score one model over every suite, then its self-check."""
    spec = lm.spec
    described = lm.describe()
    if spec.name in run["models"]:
        _guard(
            {"fingerprint": run["models"][spec.name]["fingerprint"]},
            "fingerprint",
            described["fingerprint"],
            f"model '{spec.name}' (its weights or tokenizer changed)",
        )
    choice = choose_decoder(lm, settings.decoder)
    weights = lm.info.get("weights_dtype")
    if weights and choice.name != "invariant" and lm.dtype != weights:
        lm.dtype = described["dtype"] = weights  # only the invariant kernels cast
    described["decoding"] = choice.to_dict()
    if lm.device.startswith("cuda") and not choice.batch_invariant:
        note = choice.detail.get("note", "")
        LOG.warning(f"  warning: {spec.name} is decoded by '{choice.name}' ({note})")
    run["models"][spec.name] = described
    if world.main:
        folder.write_run(run)
    with evaluation_mode(lm.model):
        # a batch-invariant decoder gives each prompt the same output in any batch, so the
        # suites share batches (one decode, not one per suite); other decoders batch each
        # suite alone, so that a suite's outputs never depend on which suites ran with it
        groups = [suites] if choice.batch_invariant else [[s] for s in suites]
        for group in groups:
            _run_group(lm, group, mine, run, settings, done, log, progress, world, choice.name)
        if settings.self_check:
            check = _self_check(lm, suites, folder, settings, choice.name, log, world)
            described["self_check"] = check
            if world.main:
                folder.write_run(run)


def _summary(folder: RunFolder, evaluated: set[str]) -> dict[str, Any]:
    """summary.json after this call: the models it evaluated summarised again, the others' entries
    kept from the summary before (their samples are as they were), so that a folder evaluated
    model after model (a curve) is not summarised whole each time."""
    records = folder.read_samples(shared=True)
    before = read_json(folder.summary).get("models", {}) if folder.summary.exists() else {}
    models = {r["model"] for r in records}
    redo = evaluated | (models - set(before))
    summary = summarize(r for r in records if r["model"] in redo)
    summary["models"] = {
        m: summary["models"][m] if m in redo else before[m]
        for m in dict.fromkeys(r["model"] for r in records)
        if m in redo or m in before
    }
    return summary


def _name(model: ModelSpec | LoadedModel) -> str:
    return model.spec.name if isinstance(model, LoadedModel) else model.name


def _self_check(
    lm: LoadedModel,
    suites: list[Suite],
    folder: RunFolder,
    settings: DecodeSettings,
    decoder: str,
    log: Callable[[str], None],
    world: World,
) -> dict[str, Any]:
    """Decode a seeded sample of the model's questions alone; compare with the batched run."""
    world.barrier()  # every rank's share of this model is on disk
    limits = {
        (s.name, q.id): settings.max_new_tokens or q.max_new_tokens
        for s in suites
        for q in s.questions
    }
    check = self_check(lm, folder.read_all_samples(), limits, settings.self_check, decoder, world)
    if check.ok:
        log(f"  self-check: {check.identical}/{check.questions} identical decoded one at a time")
    else:
        ids = ", ".join(f"{m['suite']}/{m['id']}" for m in check.mismatches)
        changed = check.questions - check.identical
        LOG.warning(
            f"  WARNING self-check: {changed} of {check.questions} outputs changed when decoded "
            f"one at a time ({ids}): outputs depend on the batch; compare runs by verdicts"
        )
    return check.to_dict()


def _run_group(
    lm: LoadedModel,
    suites: list[Suite],
    folder: RunFolder,
    run: dict[str, Any],
    settings: DecodeSettings,
    done: set[tuple[str, str, str]],
    log: Callable[[str], None],
    progress: bool,
    world: World | None = None,
    decoder: str | None = None,
) -> None:
    """Decode the suites' questions as one stream of batches and append their samples."""
    world = world or World()
    items: dict[str, tuple[Suite, Question, str]] = {}
    for suite in suites:
        questions = suite.questions[: settings.limit] if settings.limit else suite.questions
        for q in questions:
            prompt = render(lm.tokenizer, q.prompt, q.system, q.history)
            items[_request_id(suite, q)] = (suite, q, prompt)
    requests = [
        Request(key, prompt, settings.max_new_tokens or q.max_new_tokens)
        for key, (_, q, prompt) in items.items()
    ]
    skip = {key for key, (suite, q, _) in items.items() if (lm.spec.name, suite.name, q.id) in done}
    names = ", ".join(s.name for s in suites)
    todo = len(requests) - len(skip)
    if not todo:
        log(f"  {names}: all {len(requests)} samples already done")
        return
    # under several ranks each decodes only its share, whose size the batch plan decides
    share = "" if world.size == 1 else f" (rank {world.rank})"
    bar = progress_bar(
        todo if world.size == 1 else None, f"{lm.spec.name}/{names}{share}", progress
    )
    start, made = time.perf_counter(), 0

    def record_event(event: dict) -> None:
        run.setdefault("events", []).append(
            {"time": _now(), "model": lm.spec.name, "suite": names, **event}
        )
        if world.main:
            folder.write_run(run)
        log(f"  {names}: out of memory at batch {event['batch']}, retrying in halves")

    for batch in generate(
        lm,
        requests,
        batch_size=settings.batch_size,
        skip=skip,
        progress=bar.update,
        on_event=record_event,
        decoder=decoder or settings.decoder,
        shard=(world.rank, world.size),
        agree=world.agree_min,
    ):
        records = []
        for g in batch:
            suite, q, prompt = items[g.id]
            records.append(make_record(lm.spec.name, suite, q, prompt, replace(g, id=q.id)))
        folder.append_samples(records)
        done.update(key_of(r) for r in records)
        made += len(records)
    bar.close()
    log(f"  {names}{share}: {made} samples in {time.perf_counter() - start:.1f} s")


def _request_id(suite: Suite, q: Question) -> str:
    """Unique across the suites decoded together (question ids are unique within a suite)."""
    return f"{suite.name}\x1f{q.id}"


def _judged(
    folder: RunFolder,
    run: dict[str, Any],
    records: list[dict[str, Any]] | list[Sample],
    questions: dict[tuple[str, str], tuple[Suite, Question]],
    judges: dict[str, ModelSpec],
    settings: DecodeSettings,
    device: str,
    trust_remote_code: bool,
    log: Callable[[str], None],
    progress: bool,
) -> list[dict[str, Any]]:
    """The judging pass over the run's samples: rewrites samples.jsonl with the verdicts and
    records the judges in run.json."""
    samples = as_samples(records)
    verdicts, used = judge_pass(
        samples,
        {key: q for key, (_, q) in questions.items()},
        judges,
        device=device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        decoder=settings.decoder,
        trust_remote_code=trust_remote_code,
        log=log,
        progress=progress,
    )
    records = _rebuilt(samples, questions, verdicts)
    folder.rewrite_samples(records)
    run["judges"] = used
    folder.write_run(run)
    return records


def _rebuilt(
    samples: list[Sample],
    questions: dict[tuple[str, str], tuple[Suite, Question]],
    verdicts: Verdicts,
) -> list[dict[str, Any]]:
    """The samples scored again from their stored outputs (and the judges' verdicts)."""
    records = []
    for i, r in enumerate(samples):
        suite, q = questions[(r.suite, r.id)]
        gen = Generation(
            r.id, r.output, r.finish_reason, r.new_tokens, r.prompt_tokens, r.error, r.min_margin
        )
        records.append(make_record(r.model, suite, q, r.prompt, gen, verdicts.get(i)))
    return records


def _settings_of(run: dict[str, Any]) -> DecodeSettings:
    """The decode settings a run was made with (the judges decode with them again)."""
    decode = run.get("decode", {})
    batch = decode.get("batch_size", "auto")
    return DecodeSettings(
        batch_size=batch if isinstance(batch, int) else None,
        device=decode.get("device", "auto"),
        dtype=decode.get("dtype", "auto"),
        decoder=decode.get("decoder", "auto"),
    )


def rescore(out: Path, *, log: Callable[[str], None] = say, progress: bool = True) -> dict:
    """Score samples.jsonl again with the suites' current scorers, without generating; the
    judges of model-graded scorers read the answers again, with the run's decode settings."""
    folder = RunFolder(out)
    run = folder.read_run()
    suites = {name: load_suite(Path(info["path"])) for name, info in run["suites"].items()}
    samples = as_samples(folder.read_samples())
    questions: dict[tuple[str, str], tuple[Suite, Question]] = {}
    for r in samples:
        suite = suites[r.suite]
        q = next((q for q in suite.questions if q.id == r.id), None)
        if q is None:
            raise InputError(f"{suite.path}: question '{r.id}' of {out} is gone from the suite")
        if q.prompt != r.question:
            raise InputError(f"{suite.path}: question '{q.id}' has a new prompt; run it again")
        questions[(r.suite, r.id)] = (suite, q)
    judges = check_judges(suites.values())
    if judges:
        settings = _settings_of(run)
        records = _judged(
            folder,
            run,
            samples,
            questions,
            judges,
            settings,
            settings.device,
            False,
            log,
            progress,
        )
    else:
        records = _rebuilt(samples, questions, {})
        folder.rewrite_samples(records)
        run.pop("judges", None)
    summary = summarize(records)
    summary["run"] = str(folder.path)
    folder.write_summary(summary)
    for name, suite in suites.items():  # the run now reflects the suites as they are
        run["suites"][name]["hash"] = suite.hash
    run.setdefault("events", []).append({"time": _now(), "event": "rescored"})
    folder.write_run(run)
    return summary
