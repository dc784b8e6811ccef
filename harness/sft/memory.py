"""Packed micro-batches sized to the GPU's memory, the optimizer step kept as chosen.

Tokens per optimizer step are a learning choice (the learning rate is scaled to them); how many of
them one forward/backward holds is a memory choice. Bigger micro-batches keep the GPU busier (32k
tokens a step ran 1.1-1.3x the tokens/s of 16k on an H200, benchmarks/RESULTS.md), so a step
holds as many packed sequences as fit, and where fewer fit than chosen, gradient accumulation
makes up the rest: same step, same learning rate, less memory.

The card's total memory is the measure, not what is free at the moment: every rank of a
several-GPU run must choose the same micro-batch, and before the Trainer places the model all
ranks' weights may still sit on the first GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import HarnessError
from ..logs import say
from ..models import attention_shape

if TYPE_CHECKING:
    from .settings import SFTSettings

# Bytes kept for backward per token and layer without activation checkpointing, bf16 autocast,
# in units of the layer's widths (hidden, query, key/value and MLP). Fitted on a Qwen3-0.6B
# shape on an H200: peak 36.6 / 64.0 / 91.5 GB at 16.3k / 32.2k / 48.9k tokens a step with
# Liger's kernels, 1.68 MB a token, which this gives within 3%.
PER_WIDTH = {"hidden": 16, "query": 6, "kv": 8, "mlp": 8}
# The same with the layers compiled (measured 1.36 MB a token: fused kernels keep fewer
# intermediates) and with PyTorch's eager kernels (2.33 MB), with a little headroom.
KERNELS_FACTOR = {"liger": 1.0, "compiled": 0.85, "eager": 1.45}
# float32 weights, gradients and two Adam moments, and the bf16 copy autocast makes (measured:
# 9.1 GB besides activations for 596M parameters, 15.3 bytes each); DDP adds gradient buckets
STATE_BYTES_PER_PARAM = 18
DDP_BYTES_PER_PARAM = 4
# with activation checkpointing a layer keeps only its input: float32, the hidden width
CHECKPOINTED_BYTES_PER_WIDTH = 4
# The sync-free loss head (head.py) works on tiles of bf16 logits of TILE_BYTES; it holds about
# HEAD_TILES tiles' worth at once (logits, their gradient, the compiled kernels' buffers; eagerly
# also float32 copies) and, per vocabulary x hidden, a float32 gradient and bf16 copies (8 bytes).
# Measured: peak 60.75 GB vs 52.94 GB with TRL's head, compiled layers, 32,173 tokens (H200).
TILE_BYTES = {"compiled": 2**31, "eager": 2**27}
HEAD_TILES = {"compiled": 4, "eager": 10}
HEAD_BYTES_PER_VOCAB_WIDTH = 8


def head_bytes(config: Any, settings: SFTSettings) -> int:
    """Working memory of the sync-free loss head (TRL's is within the per-token fit)."""
    if not settings.sync_free:
        return 0
    kernels = "compiled" if settings.compile else "eager"
    vocab = config.vocab_size * config.hidden_size * HEAD_BYTES_PER_VOCAB_WIDTH
    return HEAD_TILES[kernels] * TILE_BYTES[kernels] + vocab


def kernels_of(settings: SFTSettings) -> str:
    """Which kernels the settings train with (they keep different intermediates for backward)."""
    return "compiled" if settings.compile else "liger" if settings.liger else "eager"


def bytes_per_token(config: Any, kernels: str) -> float:
    """Activation memory one training token needs, from the model's config."""
    hidden = config.hidden_size
    shape = attention_shape(config)
    mlp = getattr(config, "intermediate_size", None) or 4 * hidden
    per_layer = (
        PER_WIDTH["hidden"] * hidden
        + PER_WIDTH["query"] * shape.heads * shape.head_dim
        + PER_WIDTH["kv"] * shape.kv_heads * shape.head_dim
        + PER_WIDTH["mlp"] * mlp
    )
    return per_layer * config.num_hidden_layers * KERNELS_FACTOR[kernels]


def fit_to_card(
    settings: SFTSettings,
    config: Any,
    n_params: int,
    device: str,
    processes: int = 1,
    log: Callable[[str], None] = say,
) -> SFTSettings:
    """`fit_memory` for the CUDA card `device` (under torchrun: this rank's, the same size on
    every rank)."""
    import torch

    total = torch.cuda.get_device_properties(torch.device(device)).total_memory
    return fit_memory(settings, config, n_params, total, processes, log)


def fit_memory(
    settings: SFTSettings,
    config: Any,
    n_params: int,
    total_bytes: int,
    processes: int = 1,
    log: Callable[[str], None] = say,
) -> SFTSettings:
    """`settings` with batch_size x grad_accum rearranged so one micro-batch fits
    `settings.memory_fraction` of a card of `total_bytes`; tokens per optimizer step unchanged.
    Where not even one sequence fits, activation checkpointing; where the model's training
    state alone does not fit, an error before any work."""
    if not settings.packing or settings.memory_fraction <= 0:
        return settings
    state = (STATE_BYTES_PER_PARAM + (DDP_BYTES_PER_PARAM if processes > 1 else 0)) * n_params
    head = head_bytes(config, settings)
    budget = total_bytes * settings.memory_fraction - state - head
    if settings.activation_checkpointing:
        per_token = CHECKPOINTED_BYTES_PER_WIDTH * config.hidden_size * config.num_hidden_layers
    else:
        per_token = bytes_per_token(config, kernels_of(settings))
    per_sequence = per_token * settings.max_length
    fits = int(budget // per_sequence) if budget > 0 else 0
    card = f"{settings.memory_fraction:.0%} of {total_bytes / 1e9:.0f} GB"
    if fits >= settings.batch_size:
        log(
            f"memory: {settings.batch_size} x {settings.max_length} tokens a micro-batch "
            f"(about {settings.batch_size * per_sequence / 1e9:.1f} GB of activations and "
            f"{state / 1e9:.1f} GB of training state in {card})"
        )
        return settings
    if fits == 0 and head:
        # the head's tiles are a speed choice: give them up before the activations
        log(
            f"memory: no {settings.max_length}-token sequence fits beside the sync-free loss "
            f"head's {head / 1e9:.1f} GB in {card}: TRL's head instead"
        )
        plain = replace(settings, sync_free=False)
        return fit_memory(plain, config, n_params, total_bytes, processes, log)
    if fits == 0 and not settings.activation_checkpointing:
        checkpointed = replace(settings, activation_checkpointing=True)
        log(
            f"memory: one {settings.max_length}-token sequence needs about "
            f"{per_sequence / 1e9:.1f} GB of activations, {max(budget, 0) / 1e9:.1f} GB left in "
            f"{card}: activation checkpointing on"
        )
        return fit_memory(checkpointed, config, n_params, total_bytes, processes, log)
    if fits == 0:
        raise HarnessError(
            f"memory: training {n_params / 1e6:.0f}M parameters needs about {state / 1e9:.1f} GB "
            f"of state and {per_sequence / 1e9:.1f} GB for one checkpointed "
            f"{settings.max_length}-token sequence, more than {card}; use a larger GPU, a "
            f"smaller max_length, or raise memory_fraction"
        )
    # the largest micro-batch that fits and divides the step, so the step stays exactly as chosen
    batch = max(d for d in range(1, fits + 1) if settings.batch_size % d == 0)
    split = settings.batch_size // batch
    log(
        f"memory: {fits} x {settings.max_length}-token sequences fit {card}: micro-batch "
        f"{batch} x accumulation {settings.grad_accum * split} instead of "
        f"{settings.batch_size} x {settings.grad_accum}"
    )
    return replace(settings, batch_size=batch, grad_accum=settings.grad_accum * split)
