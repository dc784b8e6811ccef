"""Packed micro-batches sized to the GPU's memory, the optimizer step kept as chosen.

Tokens per optimizer step are a learning choice (the learning rate is scaled to them); how many of
them one forward/backward holds is a memory choice. Bigger micro-batches keep the GPU busier (32k
tokens a step ran 1.3x the tokens/s of 16k on an H200, benchmarks/RESULTS.md), so a step holds as
many packed sequences as fit, and where fewer fit than chosen, gradient accumulation makes up the
rest: same step, same learning rate, less memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

# Bytes kept for backward per token and layer without activation checkpointing, bf16 autocast,
# in units of the layer's widths (hidden, query, key/value and MLP). Fitted on a Qwen3-0.6B
# shape on an H200: peak 36.6 / 64.0 / 91.5 GB at 16.3k / 32.2k / 48.9k tokens a step with
# Liger's kernels, 1.68 MB a token, which this gives within 3%.
PER_WIDTH = {"hidden": 16, "query": 6, "kv": 8, "mlp": 8}
# The same with the layers compiled (measured 1.36 MB a token: fused kernels keep fewer
# intermediates) and with PyTorch's eager kernels (2.33 MB), with a little headroom.
KERNELS_FACTOR = {"liger": 1.0, "compiled": 0.85, "eager": 1.45}
# float32 gradients and two Adam moments, plus the bf16 copy of the weights autocast makes; the
# float32 weights themselves are already on the GPU when free memory is read
STATE_BYTES_PER_PARAM = 14


def kernels(settings: Any) -> str:
    return "compiled" if settings.compile else "liger" if settings.liger else "eager"


def bytes_per_token(config: Any, kernels: str = "liger") -> float:
    """Activation memory one training token needs, from the model's config."""
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    mlp = getattr(config, "intermediate_size", None) or 4 * hidden
    per_layer = (
        PER_WIDTH["hidden"] * hidden
        + PER_WIDTH["query"] * heads * head_dim
        + PER_WIDTH["kv"] * kv_heads * head_dim
        + PER_WIDTH["mlp"] * mlp
    )
    return per_layer * config.num_hidden_layers * KERNELS_FACTOR[kernels]


def fit_memory(
    settings: Any,
    config: Any,
    n_params: int,
    free_bytes: int,
    log: Callable[[str], None] = print,
) -> Any:
    """`settings` with batch_size x grad_accum rearranged so one micro-batch fits
    `settings.memory_fraction` of `free_bytes`; tokens per optimizer step unchanged."""
    if not settings.packing or settings.memory_fraction <= 0 or settings.activation_checkpointing:
        return settings
    budget = free_bytes * settings.memory_fraction - STATE_BYTES_PER_PARAM * n_params
    per_sequence = bytes_per_token(config, kernels(settings)) * settings.max_length
    fits = int(budget // per_sequence) if budget > 0 else 0
    gb = f"{budget / 1e9:.1f} GB" if budget > 0 else "no memory"
    if fits >= settings.batch_size:
        log(
            f"memory: {settings.batch_size} x {settings.max_length} tokens a micro-batch "
            f"(about {settings.batch_size * per_sequence / 1e9:.1f} GB of {gb} for activations)"
        )
        return settings
    if fits == 0:
        log(
            f"memory: one {settings.max_length}-token sequence needs about "
            f"{per_sequence / 1e9:.1f} GB, {gb} left: activation checkpointing on, "
            f"1 sequence a micro-batch x {settings.batch_size * settings.grad_accum} accumulated"
        )
        return replace(
            settings,
            activation_checkpointing=True,
            grad_accum=settings.batch_size * settings.grad_accum,
            batch_size=1,
        )
    # the largest micro-batch that fits and divides the step, so the step stays exactly as chosen
    batch = max(d for d in range(1, fits + 1) if settings.batch_size % d == 0)
    split = settings.batch_size // batch
    log(
        f"memory: {fits} x {settings.max_length}-token sequences fit ({gb}): micro-batch "
        f"{batch} x accumulation {settings.grad_accum * split} instead of "
        f"{settings.batch_size} x {settings.grad_accum}"
    )
    return replace(settings, batch_size=batch, grad_accum=settings.grad_accum * split)
