"""Deterministic greedy decoding, batched.

Batches are formed from one suite alone: prompts sorted by token length (longest first, so an
out-of-memory shows up in the first batch), cut into fixed-size groups. A rerun, a resume or a
different set of other suites or models gives the same batches, and on CPU in float32 batched
output equals one-at-a-time output token for token (tests/test_runner.py checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .fastdecode import greedy_static
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    """Indices into the suite's requests: longest first, ties in suite order, fixed size."""
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


def _finish(lm: LoadedModel, req: Request, ids: list[int], prompt_tokens: int) -> Generation:
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
        text, reason = text[: min(hits)], "stop"
    return Generation(req.id, text, reason, count, prompt_tokens)


DECODERS = ("auto", "hf", "static")


def use_static_decoder(lm: LoadedModel, decoder: str) -> bool:
    """auto: the static-cache decoder on CUDA (stop strings need generate's own stopping)."""
    if decoder == "auto":
        return lm.device.startswith("cuda") and not lm.chat.stop_strings
    return decoder == "static"


def generate_batch(
    lm: LoadedModel, batch: list[Request], decoder: str = "auto"
) -> list[Generation]:
    """Greedy-decode one batch with left padding and the KV cache."""
    import torch

    tok = lm.tokenizer
    enc = tok(
        [r.prompt for r in batch],
        return_tensors="pt",
        padding=True,
        add_special_tokens=lm.chat.add_special_tokens,
    ).to(lm.device)
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    limit = max(r.max_new_tokens for r in batch)
    if use_static_decoder(lm, decoder):
        new = greedy_static(
            lm.model, enc["input_ids"], enc["attention_mask"], limit, list(lm.chat.stop_token_ids)
        ).tolist()
    else:
        config = greedy_config(lm, limit)
        with torch.inference_mode():
            out = lm.model.generate(
                **enc,
                generation_config=config,
                tokenizer=tok if config.stop_strings else None,
            )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
    return [_finish_safe(lm, r, ids, n) for r, ids, n in zip(batch, new, lengths, strict=True)]


def _finish_safe(lm: LoadedModel, req: Request, ids: list[int], prompt_tokens: int) -> Generation:
    """One sample's output that cannot be decoded is an error on that sample, not the run's."""
    try:
        return _finish(lm, req, ids, prompt_tokens)
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
    lengths = prompt_lengths(lm, requests)
    limit = _context_limit(lm)
    size = batch_size or agree(
        auto_batch_size(
            lm, max(lengths, default=1) + max((r.max_new_tokens for r in requests), default=0)
        )
    )
    rank, ranks = shard
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
