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
from typing import Any

import torch

from .memory import TILE_BYTES

POSITIONS, TARGETS, TOKENS = "label_positions", "label_targets", "label_tokens"


class LabelledPositions:
    """Wraps a collator: adds where the next-token labels are (flat indices into the batch's
    `[:, :-1]` positions), what they are, and how many tokens the examples hold (padding not
    counted), computed on the CPU with the batch."""

    def __init__(self, collator: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, examples: list[Any]) -> dict[str, Any]:
        batch = self.collator(examples)
        following = batch["labels"][:, 1:].reshape(-1)
        positions = (following != -100).nonzero().flatten()
        batch[POSITIONS] = positions
        batch[TARGETS] = following[positions]
        # TRL counts the flattened row of a padding-free batch, padding to a fixed shape included
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


# Eagerly, a tile's softmax, entropy and gradient are each a float32 copy of its logits: small
# tiles. Compiled, they fuse into passes over the logits: tiles of 2 GiB (Qwen3's 151,936-token
# vocabulary: 7,067 tokens).
_TILE: dict[str, Any] = {"fn": _tile, "bytes": TILE_BYTES["eager"]}


def compile_tile() -> None:
    """Compile the tile's arithmetic (once per process; CUDA with Triton)."""
    if _TILE["fn"] is _tile:
        _TILE.update(fn=torch.compile(_tile, dynamic=True), bytes=TILE_BYTES["compiled"])


class FusedHead(torch.autograd.Function):
    """Summed next-token loss of `hidden @ weight.T` at the given targets, plus the summed entropy
    and the count of top-1 hits (no gradient)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype=None):  # type: ignore[override]
        """`dtype`: the precision of the products (the run's bf16 or fp16: the head runs outside
        the autocast that wraps the model's forward); None: autocast's, else the inputs'."""
        device = hidden.device
        if dtype is None:
            autocast = torch.is_autocast_enabled(device.type)
            dtype = torch.get_autocast_dtype(device.type) if autocast else hidden.dtype
        w = weight.to(dtype)
        n, vocab = hidden.shape[0], weight.shape[0]
        chunk = max(1, _TILE["bytes"] // (vocab * w.element_size()))
        want_grads = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_h = torch.empty(hidden.shape, dtype=dtype, device=device) if want_grads else None
        grad_w = None
        nll = hidden.new_zeros((), dtype=torch.float32)
        entropy = torch.zeros_like(nll)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk].to(dtype)
            g, part_nll, part_entropy, part_correct = _TILE["fn"](
                h @ w.t(), targets[start : start + chunk]
            )
            nll, entropy, correct = nll + part_nll, entropy + part_entropy, correct + part_correct
            if want_grads:
                grad_h[start : start + chunk] = g @ w
                gw = g.t() @ h
                grad_w = gw.float() if grad_w is None else grad_w.add_(gw)
        if want_grads and grad_w is None:  # no labelled token: zero gradients, still connected
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=device)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(entropy, correct)
        return nll, entropy, correct

    @staticmethod
    def backward(ctx, grad_nll, *_):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        grads = (grad_h * grad_nll).to(hidden_dtype), (grad_w * grad_nll).to(weight_dtype)
        return *grads, None, None
