"""Deterministic greedy decoding, batched.

Prompts are sorted by token length (longest first, so an out-of-memory shows up in the first
batch) and cut into fixed-size groups; a rerun or a resume gives the same batches. On CUDA the
default decoder is batch-invariant by construction (`harness/invariant/`): a prompt's output does
not depend on the batch at all, so the suites of a run share batches. Other decoders batch each
suite alone, so that other suites or models in the run cannot change its batches. On CPU in
float32 transformers' `generate` gives batched output equal to one-at-a-time output token for
token (tests/test_runner.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .models import LoadedModel, attention_shape

# CPU: batches of up to 128 (a 126-question suite in one batch: per-step overhead bounds small
# models; benchmarks/cpu_batch.py), halved while their KV cache would pass 8 GiB. A fixed
# budget, not the free memory: the same batches on every machine.
CPU_BATCH_SIZE = 128
CPU_KV_BUDGET = 8 * 2**30
MAX_AUTO_BATCH = 1024


@dataclass(frozen=True)
class Request:
    id: str
    prompt: str  # as rendered through the chat template
    max_new_tokens: int


@dataclass(frozen=True)
class Generation:
    id: str
    output: str
    finish_reason: str  # eos | stop | length | error
    new_tokens: int
    prompt_tokens: int
    error: str | None = None
    # the smallest gap between the best and second-best logit along the kept greedy path: how
    # close this output came to another (a different kernel, dtype or card may flip it there)
    min_margin: float | None = None


def greedy_config(lm: LoadedModel, max_new_tokens: int) -> Any:
    """A generation config that is plain greedy whatever the checkpoint ships.

    transformers fills every unset field from the model's own generation_config, which for many
    checkpoints carries sampling, repetition_penalty or no_repeat_ngram_size; those would make
    "greedy" something else. So the config is built from scratch, and `models.load` empties the
    model's own.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=list(lm.chat.stop_token_ids) or None,
        pad_token_id=lm.tokenizer.pad_token_id,
        stop_strings=list(lm.chat.stop_strings) or None,
    )


def prompt_lengths(lm: LoadedModel, requests: list[Request]) -> list[int]:
    enc = lm.tokenizer([r.prompt for r in requests], add_special_tokens=lm.chat.add_special_tokens)[
        "input_ids"
    ]
    return [len(ids) for ids in enc]


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices into the requests: longest first, ties in request order, fixed size."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def sequence_bytes(lm: LoadedModel, longest: int) -> int:
    """One sequence's KV cache at `longest` tokens, with its last-position logits."""
    import torch

    cfg = lm.model.config.get_text_config()
    shape = attention_shape(cfg)
    elem = torch.finfo(getattr(torch, lm.dtype)).bits // 8
    per_seq = 2 * cfg.num_hidden_layers * shape.kv_heads * shape.head_dim * elem * longest
    return per_seq + cfg.vocab_size * 4 * 2  # last-position logits and their float32 copy


def auto_batch_size(lm: LoadedModel, longest: int) -> int:
    """CPU: `CPU_BATCH_SIZE` within `CPU_KV_BUDGET`. GPU: as many sequences as the KV cache fits
    in 60% of free memory. Powers of two."""
    per_seq = max(sequence_bytes(lm, longest), 1)
    if lm.device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        fit, cap = int(free * 0.6 // per_seq), MAX_AUTO_BATCH
    else:
        fit, cap = int(CPU_KV_BUDGET // per_seq), CPU_BATCH_SIZE
    size = 1
    while size * 2 <= min(fit, cap):
        size *= 2
    return size


def _context_limit(lm: LoadedModel) -> int | None:
    return getattr(lm.model.config, "max_position_embeddings", None)


def _tokens_to_stop(lm: LoadedModel, ids: list[int]) -> int:
    """The fewest leading ids whose text holds a stop string (ids' full text holds one)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        text = lm.tokenizer.decode(ids[:mid], skip_special_tokens=False)
        if any(s in text for s in lm.chat.stop_strings):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _finish(
    lm: LoadedModel,
    req: Request,
    ids: list[int],
    prompt_tokens: int,
    margins: list[float] | None = None,
) -> Generation:
    """Cut one row of generated ids at its own end: a stop token, a stop string or its limit."""
    stops = set(lm.chat.stop_token_ids)
    ids = ids[: req.max_new_tokens]
    end = next((i for i, t in enumerate(ids) if t in stops), None)
    if end is not None:
        text = lm.tokenizer.decode(ids[:end], skip_special_tokens=False)
        reason, count = "eos", end + 1
    else:
        pad = lm.tokenizer.pad_token_id
        while ids and ids[-1] == pad and pad not in stops:  # rows finished by a stop string
            ids = ids[:-1]
        text = lm.tokenizer.decode(ids, skip_special_tokens=False)
        reason, count = "length", len(ids)
    hits = [text.find(s) for s in lm.chat.stop_strings if s in text]
    if hits:
        # decoders that run every row to the limit stop here too: count to the stop string
        text, reason, count = text[: min(hits)], "stop", _tokens_to_stop(lm, ids[:count])
    kept = margins[:count] if margins else []
    margin = round(min(kept), 6) if kept else None
    return Generation(req.id, text, reason, count, prompt_tokens, min_margin=margin)


class _Margins:
    """A logits processor for `generate` that keeps each step's top-two gap (changes nothing)."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        top = scores.float().topk(2, dim=-1).values
        self.steps.append(top[:, 0] - top[:, 1])
        return scores

    def rows(self) -> list[list[float]]:
        import torch

        return torch.stack(self.steps, dim=1).tolist() if self.steps else []


DECODERS = ("auto", "invariant", "static", "hf")


@dataclass(frozen=True)
class DecoderChoice:
    """The decoder a model is run with, and what run.json says about it."""

    name: str  # invariant | static | hf
    batch_invariant: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"decoder": self.name, "batch_invariant": self.batch_invariant, **self.detail}


def choose_decoder(lm: LoadedModel, requested: str = "auto") -> DecoderChoice:
    """auto: the batch-invariant decoder on CUDA where the architecture allows it, else the
    static-cache decoder (generate where stop strings need its own stopping); generate on CPU.
    """
    from .invariant import InvariantDecoder, Unsupported

    if requested == "hf" or (requested == "auto" and not lm.device.startswith("cuda")):
        note = (
            "float32 on CPU: batched equals one at a time in tests, not by construction"
            if not lm.device.startswith("cuda")
            else "batch shapes choose the GPU kernels: outputs may change with the batch"
        )
        return DecoderChoice("hf", False, {"note": note})
    if requested == "static":
        return DecoderChoice("static", False, {"note": "batch shapes choose the GPU kernels"})
    try:
        decoder = InvariantDecoder(lm.model)
    except Unsupported as exc:
        if requested == "invariant":
            raise InputError(
                f"invariant: model '{lm.spec.name}' has {exc}; use auto", argument="decoder"
            ) from None
        name = "hf" if lm.chat.stop_strings else "static"
        return DecoderChoice(name, False, {"note": f"not batch-invariant: the model has {exc}"})
    info = decoder.describe()
    return DecoderChoice("invariant", info.pop("batch_invariant"), info)


def generate_batch(
    lm: LoadedModel, batch: list[Request], decoder: str = "auto"
) -> list[Generation]:
    """Greedy-decode one batch (`decoder`: a name of DECODERS)."""
    name = choose_decoder(lm, decoder).name if decoder == "auto" else decoder
    tok, limit = lm.tokenizer, max(r.max_new_tokens for r in batch)
    stop_ids = list(lm.chat.stop_token_ids)
    if name == "invariant":
        from .invariant import InvariantDecoder

        prompts = tok([r.prompt for r in batch], add_special_tokens=lm.chat.add_special_tokens)
        ids = prompts["input_ids"]
        import torch

        decoder = InvariantDecoder(lm.model, dtype=getattr(torch, lm.dtype))
        limits = [r.max_new_tokens for r in batch]  # rows leave the batch at their own
        out = decoder.generate(ids, limits, stop_ids, pad_id=tok.pad_token_id)
        lengths, new, margins = [len(p) for p in ids], out.tokens.tolist(), out.margins.tolist()
    else:
        import torch

        enc = tok(
            [r.prompt for r in batch],
            return_tensors="pt",
            padding=True,
            add_special_tokens=lm.chat.add_special_tokens,
        ).to(lm.device)
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        if name == "static":
            from .fastdecode import greedy_static

            ids, mask = enc["input_ids"], enc["attention_mask"]
            tokens, gaps = greedy_static(lm.model, ids, mask, limit, stop_ids, with_margins=True)
            new, margins = tokens.tolist(), gaps.tolist()
        else:
            config, gaps = greedy_config(lm, limit), _Margins()
            with torch.inference_mode():
                out = lm.model.generate(
                    **enc,
                    generation_config=config,
                    logits_processor=[gaps],
                    tokenizer=tok if config.stop_strings else None,
                )
            new, margins = out[:, enc["input_ids"].shape[1] :].tolist(), gaps.rows()
    margins = margins or [None] * len(batch)
    return [
        _finish_safe(lm, r, ids, n, m)
        for r, ids, n, m in zip(batch, new, lengths, margins, strict=True)
    ]


def _finish_safe(
    lm: LoadedModel,
    req: Request,
    ids: list[int],
    prompt_tokens: int,
    margins: list[float] | None = None,
) -> Generation:
    """One sample's output that cannot be decoded is an error on that sample, not the run's."""
    try:
        return _finish(lm, req, ids, prompt_tokens, margins)
    except Exception as exc:  # a tokenizer that cannot decode what the model produced
        return Generation(
            req.id,
            "",
            "error",
            len(ids),
            prompt_tokens,
            error=f"could not decode the output: {type(exc).__name__}: {exc}",
        )


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def generate_resilient(
    lm: LoadedModel,
    batch: list[Request],
    on_event: Callable[[dict], None] | None = None,
    decoder: str = "auto",
) -> list[Generation]:
    """generate_batch, halving the batch on out-of-memory down to single prompts.

    Greedy outputs do not depend on the batch (exactly so in float32 on CPU; the GPU agreement
    is measured in benchmarks/), so a split batch gives the same answers, only slower.
    """
    try:
        return generate_batch(lm, batch, decoder)
    except Exception as exc:
        if not is_out_of_memory(exc) or len(batch) == 1:
            raise
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(batch) // 2
    if on_event:
        on_event(
            {"event": "out_of_memory", "batch": len(batch), "retry_as": [half, len(batch) - half]}
        )
    return generate_resilient(lm, batch[:half], on_event, decoder) + generate_resilient(
        lm, batch[half:], on_event, decoder
    )


def generate(
    lm: LoadedModel,
    requests: list[Request],
    *,
    batch_size: int | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
    progress: Callable[[int], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    decoder: str = "auto",
    shard: tuple[int, int] = (0, 1),
    agree: Callable[[int], int] = lambda size: size,
) -> Iterator[list[Generation]]:
    """Yield generations batch by batch, for the requests whose ids are not in `skip`.

    A batch is decoded whole whenever any of its members is missing, so a resumed run decodes
    the same batches as an uninterrupted one; members already done are not yielded again.
    `shard=(rank, ranks)` keeps every ranks-th planned batch, starting at rank.
    """
    decoder = choose_decoder(lm, decoder).name if decoder == "auto" else decoder
    lengths = prompt_lengths(lm, requests)
    limit = _context_limit(lm)
    size = batch_size or agree(
        auto_batch_size(
            lm, max(lengths, default=1) + max((r.max_new_tokens for r in requests), default=0)
        )
    )
    rank, ranks = shard
    if batch_size is None and ranks > 1 and decoder == "invariant":
        # each rank gets a batch even when one would hold them all; the outputs cannot change
        size = min(size, -(-len(requests) // ranks))
    for number, indices in enumerate(plan_batches(lengths, size)):
        if number % ranks != rank:
            continue
        todo = [i for i in indices if requests[i].id not in skip]
        if not todo:
            continue
        too_long = {
            i
            for i in indices
            if limit is not None and lengths[i] + requests[i].max_new_tokens > limit
        }
        runnable = [requests[i] for i in indices if i not in too_long]
        made = (
            {g.id: g for g in generate_resilient(lm, runnable, on_event, decoder)}
            if runnable
            else {}
        )
        for i in too_long:
            made[requests[i].id] = Generation(
                requests[i].id,
                "",
                "error",
                0,
                lengths[i],
                error=f"prompt of {lengths[i]} tokens + {requests[i].max_new_tokens} new tokens "
                f"exceeds the model's context of {limit}",
            )
        yield [made[requests[i].id] for i in todo]
        if progress:
            progress(len(todo))
