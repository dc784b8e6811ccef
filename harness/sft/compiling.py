"""torch.compile for training, one decoder layer at a time.

A small model's training step on a GPU is bound by the host: thousands of small kernels (norms,
rotary embedding, SwiGLU, residual adds, dtype casts) each cost a Python call and a launch.
Compiling fuses them. Compiling the whole model (Trainer's `torch_compile`) took longer than 90 s
to warm up on a Qwen3-0.6B shape and meets a graph break at the loss head's data-dependent
indexing; the model's repeated block (its `_no_split_modules` class, e.g. Qwen3DecoderLayer)
compiles once, with dynamic shapes, and that one compilation serves every layer and every packed
length (~13 s on an H200, benchmarks/RESULTS.md). Packed attention compiles into the layer once
`varlen.settle_gqa` has run (`make_trainer` does it on CUDA), else it is a graph break.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..logs import say


def compile_layers(model: Any, backend: str = "inductor", log: Callable[[str], None] = say) -> int:
    """Compile each of the model's repeated blocks in place (state dict keys unchanged, so
    checkpoints stay ordinary); returns how many. Without a known block, nothing: the whole
    model is the slow, fragile case this avoids."""
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in blocks]
    if not layers:
        log(f"compile: off ({type(model).__name__} names no repeated block to compile)")
        return 0
    for layer in layers:
        layer.compile(backend=backend, dynamic=True)
    log(
        f"compile: {len(layers)} x {type(layers[0]).__name__} ({backend}, dynamic shapes; "
        "the first step waits for the compilation)"
    )
    return len(layers)
