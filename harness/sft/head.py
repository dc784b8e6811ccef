"""The loss head of a training step that never waits for the GPU (used by `syncfree.py`).

TRL's SFT loss selects the labelled positions with a boolean mask (`hidden[mask]`: the host
waits for the GPU to count them). Here the collator, which holds the labels on the CPU anyway,
lists the labelled positions and their targets (`LabelledPositions`), so the head gathers them
with a size the host already knows. The head (`FusedHead`) projects only those positions, a
chunk of tokens at a time, and computes its gradients during the forward pass (the loss is a
plain sum, so the backward only scales them): the `(tokens, vocabulary)` logits never exist in
full, and each tile is multiplied once forward and twice for the gradients, not recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from .memory import TILE_BYTES

POSITIONS, TARGETS, TOKENS = "label_positions", "label_targets", "label_tokens"
COLLATED = (POSITIONS, TARGETS, TOKENS)  # what LabelledPositions adds to a batch


class LabelledPositions:
    """Wraps a collator: adds which positions predict a label (flat indices into the batch's
    `batch x length` positions), the labels they predict, and how many tokens the examples hold
    (padding not counted), computed on the CPU with the batch."""

    def __init__(self, collator: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, examples: list[Any]) -> dict[str, Any]:
        batch = self.collator(examples)
        labels = batch["labels"]
        rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)
        batch[POSITIONS] = rows * labels.shape[1] + cols  # the predicting token, flat (B * L)
        batch[TARGETS] = labels[rows, cols + 1]
        # the examples' own tokens (TRL counts a padding-free row padded to a fixed shape whole)
        batch[TOKENS] = sum(len(example["input_ids"]) for example in examples)
        return batch

    def __getattr__(self, name: str) -> Any:  # the wrapped collator's settings (pad_to_multiple_of)
        if name == "collator":  # not set yet (unpickling in a loader worker): no recursion
            raise AttributeError(name)
        return getattr(self.collator, name)


def _tile(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One chunk's loss terms and the gradient of its summed loss w.r.t. the logits.

    Written so that compiled it reads the tile three times and writes it once: the row maximum
    and argmax; then S = sum exp(x - max) and T = sum x exp(x - max) together (entropy is
    log S + max - T / S); then the gradient softmax - onehot."""
    x = logits.float()
    top, best = x.max(-1)
    e = torch.exp(x - top[:, None])
    s = e.sum(-1)
    t = (x * e).sum(-1)
    lse = top + torch.log(s)
    entropy = lse - t / s
    nll = lse - x.gather(1, targets[:, None]).squeeze(1)
    correct = best == targets  # TRL's is_top1 (exact ties aside)
    grad = (torch.exp(x - lse[:, None])).scatter_add(
        1, targets[:, None], -torch.ones_like(x[:, :1])
    )
    return grad.to(logits.dtype), nll.sum(), entropy.sum(), correct.sum()


@dataclass(frozen=True)
class Tile:
    """How a chunk of logits is turned into loss terms, and how large a chunk may be."""

    fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
    bytes: int


# Eagerly, a tile's softmax, entropy and gradient are each a float32 copy of its logits: small
# tiles. Compiled, they fuse into passes over the logits: tiles of 2 GiB (Qwen3's 151,936-token
# vocabulary: 7,067 tokens).
EAGER = Tile(_tile, TILE_BYTES["eager"])


@cache
def compiled_tile() -> Tile:
    """The tile's arithmetic compiled (once per process; CUDA with Triton)."""
    return Tile(torch.compile(_tile, dynamic=True), TILE_BYTES["compiled"])


class FusedHead(torch.autograd.Function):
    """Summed next-token loss of `hidden @ weight.T` at the given targets, plus the summed entropy
    and the count of top-1 hits (no gradient)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        dtype: torch.dtype | None = None,
        tile: Tile = EAGER,
        grad_enabled: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`dtype`: the precision of the products (the run's bf16: the head runs outside the
        autocast that wraps the model's forward); None: autocast's, else the inputs'.
        `grad_enabled`: the caller's grad mode (inside `forward` it is always off); without it
        no gradient is built, nor one for an input that needs none (a frozen head)."""
        device = hidden.device
        if dtype is None:
            autocast = torch.is_autocast_enabled(device.type)
            dtype = torch.get_autocast_dtype(device.type) if autocast else hidden.dtype
        w = weight.to(dtype)
        n, vocab = hidden.shape[0], weight.shape[0]
        chunk = max(1, tile.bytes // (vocab * w.element_size()))
        want_h = grad_enabled and ctx.needs_input_grad[0]
        want_w = grad_enabled and ctx.needs_input_grad[1]
        grad_h = torch.empty(hidden.shape, dtype=dtype, device=device) if want_h else None
        grad_w = None
        nll = hidden.new_zeros((), dtype=torch.float32)
        entropy = torch.zeros_like(nll)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk].to(dtype)
            g, part_nll, part_entropy, part_correct = tile.fn(
                h @ w.t(), targets[start : start + chunk]
            )
            nll, entropy, correct = nll + part_nll, entropy + part_entropy, correct + part_correct
            if want_h:
                grad_h[start : start + chunk] = g @ w
            if want_w:
                gw = g.t() @ h
                grad_w = gw.float() if grad_w is None else grad_w.add_(gw)
        if want_w and grad_w is None:  # no labelled token: zero gradients, still connected
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=device)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(entropy, correct)
        return nll, entropy, correct

    @staticmethod
    def backward(ctx: Any, grad_nll: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        dh = None if grad_h is None else (grad_h * grad_nll).to(hidden_dtype)
        dw = None if grad_w is None else (grad_w * grad_nll).to(weight_dtype)
        return dh, dw, None, None, None, None
