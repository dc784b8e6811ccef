"""Greedy decoding whose output for a prompt depends on the model, the prompt and the dtype only.

Each sequence owns a row of the KV cache and starts at slot 0, so its keys sit at the same
offsets whatever else is in the batch (no left padding inside any sum). Prompts are
right-padded: causal attention never lets a real token see the padding after it, and a pad
slot is overwritten by the token generated there before anything reads it. Every product, norm
and attention sum goes through `kernels.py`, whose order of summation is fixed per phase, so a
row's tokens are the same at batch 1 and 1,024, alone or beside any other rows, in a run or in a
rerun. On CUDA the decode step is captured once per batch and replayed as a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from .layout import Layer, Layout, Unsupported, layout_of
from .tiles import ATTN_BLOCK, DECODE, PREFILL

CHECK_EVERY = 16  # decode steps between checks (one host sync) for "every row has stopped"
PREFILL_TOKENS = 32768  # prompt tokens per prefill chunk (rows are independent, so chunks are)


def backend_for(device: torch.device | str, backend: str | None = None) -> ModuleType:
    """Triton kernels on CUDA, their torch reference elsewhere (or as asked, for tests)."""
    name = backend or ("triton" if torch.device(device).type == "cuda" else "torch")
    if name == "triton":
        try:
            from . import kernels
        except ImportError as exc:
            raise Unsupported(f"no usable Triton ({exc}); install triton") from None
        return kernels
    if name == "torch":
        from . import reference

        return reference
    raise ValueError(f"unknown backend {name!r}")


@dataclass
class Decoded:
    tokens: torch.Tensor  # [rows, steps] generated ids; rows run on past their stop token
    margins: torch.Tensor  # [rows, steps] best minus second-best logit of each greedy choice


@dataclass
class _Cache:
    k: torch.Tensor  # [layers, rows, kv_heads, slots, head_dim]
    v: torch.Tensor


@dataclass
class _Pass:
    """One forward pass: prefill (every prompt token, `per_row` tokens a row) or a decode step
    (one token a row at its position)."""

    positions: torch.Tensor  # per token; rows start at slot 0, so position == cache slot
    per_row: int
    cache: _Cache
    tables: tuple[torch.Tensor, torch.Tensor]
    tiles: Any
    prefill: bool


class InvariantDecoder:
    """Batch-invariant greedy decoding of one model (weights read in place, never copied)."""

    def __init__(self, model: Any, backend: str | None = None, dtype: Any = None):
        self.layout: Layout = layout_of(model)
        if dtype is not None and dtype != self.layout.embed.dtype:
            self.layout = self.layout.cast(dtype)  # a copy in the dtype asked for
        self.device = self.layout.embed.device
        self.dtype = self.layout.embed.dtype
        self.ops = backend_for(self.device, backend)
        self.backend = self.ops.__name__.rsplit(".", 1)[-1]

    def describe(self) -> dict[str, Any]:
        """What run.json records: how the outputs were made batch-invariant."""
        triton = self.backend == "kernels"
        return {
            "batch_invariant": triton,  # the torch reference sums in whatever order torch picks
            "kernels": "triton" if triton else "torch reference (not invariant by construction)",
            "matmul_tiles": {"prefill": vars(PREFILL), "decode": vars(DECODE)},
            "attention": f"own KV row per sequence from slot 0, key blocks of {ATTN_BLOCK}, "
            "no split of the KV length",
            "reductions": "fixed order per row; no split-K, no atomics",
        }

    # ------------------------------------------------------------------ the model's forward

    def _tables(self, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin per position from the model's own rotary module, rounded as it rounds them."""
        positions = torch.arange(slots, device=self.device)[None]
        probe = torch.zeros(1, device=self.device, dtype=torch.float32)
        cos, sin = self.layout.rotary(probe, positions)
        return cos[0].to(self.dtype).contiguous(), sin[0].to(self.dtype).contiguous()

    def _forward(self, ids: torch.Tensor, p: _Pass) -> torch.Tensor:
        """The residual stream after the final norm, one row per token."""
        lay, ops = self.layout, self.ops
        h = F.embedding(ids, lay.embed).contiguous()
        xn = torch.empty_like(h)
        delta = None
        for i, layer in enumerate(lay.layers):
            if delta is None:
                ops.add_rms_norm(h, layer.input_norm, lay.eps, xn)
            else:  # the last MLP's output joins the residual stream and is normed, in one pass
                ops.add_rms_norm(delta, layer.input_norm, lay.eps, xn, residual=h)
            delta = self._layer(layer, p.cache.k[i], p.cache.v[i], xn, h, p)
        out = torch.empty_like(h)
        ops.add_rms_norm(delta, lay.final_norm, lay.eps, out, residual=h)
        return out

    def _layer(
        self,
        layer: Layer,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        xn: torch.Tensor,
        h: torch.Tensor,
        p: _Pass,
    ) -> torch.Tensor:
        """One decoder layer: attention added into `h` and normed into `xn`; returns the MLP's
        output, which the next fused add-and-norm takes."""
        lay, ops = self.layout, self.ops
        tokens, hq, hkv, d = xn.shape[0], lay.heads, lay.kv_heads, lay.head_dim
        new = {"device": self.device, "dtype": self.dtype}
        qkv = torch.empty(tokens, (hq + 2 * hkv) * d, **new)
        col = 0
        for weight, bias in zip(layer.qkv, layer.qkv_bias, strict=True):
            ops.linear(xn, weight, bias, qkv[:, col : col + weight.shape[0]], p.tiles)
            col += weight.shape[0]
        q = torch.empty(tokens, hq, d, **new)
        cos, sin = p.tables
        norms = (layer.q_norm, layer.k_norm)
        ops.rope_into_cache(
            qkv, p.positions, p.per_row, cos, sin, *norms, lay.eps, q, k_cache, v_cache
        )
        att = torch.empty(tokens, hq, d, **new)
        if p.prefill:
            ops.prefill_attention(q, k_cache, v_cache, lay.scale, att)
        else:
            ops.decode_attention(q, k_cache, v_cache, p.positions, lay.scale, att)
        attn_out = torch.empty(tokens, lay.hidden, **new)
        ops.linear(att.view(tokens, hq * d), layer.o, layer.o_bias, attn_out, p.tiles)
        ops.add_rms_norm(attn_out, layer.post_norm, lay.eps, xn, residual=h)
        inter = lay.intermediate
        gate_up = torch.empty(tokens, 2 * inter, **new)
        ops.linear(xn, layer.gate_up[0], layer.gate_up_bias[0], gate_up[:, :inter], p.tiles)
        ops.linear(xn, layer.gate_up[1], layer.gate_up_bias[1], gate_up[:, inter:], p.tiles)
        act = torch.empty(tokens, inter, **new)
        ops.silu_mul(gate_up, act)
        out = torch.empty(tokens, lay.hidden, **new)
        ops.linear(act, layer.down, layer.down_bias, out, p.tiles)
        return out

    def _pick(self, hidden: torch.Tensor, phase: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy token and margin per row, from float32 logits (never rounded to bf16)."""
        rows = hidden.shape[0]
        logits = torch.empty(rows, self.layout.vocab, device=self.device, dtype=torch.float32)
        self.ops.linear(hidden, self.layout.head, None, logits, phase)
        token = torch.empty(rows, device=self.device, dtype=torch.long)
        margin = torch.empty(rows, device=self.device, dtype=torch.float32)
        self.ops.top2(logits, token, margin)
        return token, margin

    # ------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        stop_ids: list[int],
        *,
        pad_id: int = 0,
        cuda_graph: bool | None = None,
    ) -> Decoded:
        """Greedy continuations of unpadded prompts (token id lists)."""
        rows = len(prompts)
        width = max(len(p) for p in prompts)
        slots = width + max_new_tokens
        if slots > self.layout.max_positions:
            raise ValueError(f"{slots} positions exceed the model's {self.layout.max_positions}")
        lay = self.layout
        shape = (len(lay.layers), rows, lay.kv_heads, slots, lay.head_dim)
        # zeros: no slot is read before it is written, and none could hold a NaN if one were
        cache = _Cache(
            torch.zeros(shape, device=self.device, dtype=self.dtype),
            torch.zeros(shape, device=self.device, dtype=self.dtype),
        )
        tables = self._tables(slots)
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)
        tokens = torch.zeros(rows, max_new_tokens, dtype=torch.long, device=self.device)
        margins = torch.zeros(rows, max_new_tokens, dtype=torch.float32, device=self.device)

        chunk = max(1, PREFILL_TOKENS // width)
        for r0 in range(0, rows, chunk):
            r1 = min(rows, r0 + chunk)
            ids = torch.full((r1 - r0, width), pad_id, dtype=torch.long)
            for r in range(r0, r1):
                ids[r - r0, : len(prompts[r])] = torch.tensor(prompts[r])
            ids = ids.to(self.device).view(-1)
            pos = torch.arange(width, device=self.device).repeat(r1 - r0)
            part = _Cache(cache.k[:, r0:r1], cache.v[:, r0:r1])
            hidden = self._forward(ids, _Pass(pos, width, part, tables, PREFILL, prefill=True))
            last = torch.arange(r1 - r0, device=self.device) * width + lengths[r0:r1] - 1
            tokens[r0:r1, 0], margins[r0:r1, 0] = self._pick(hidden[last].contiguous(), PREFILL)
        if max_new_tokens == 1:
            return Decoded(tokens, margins)

        step = torch.zeros((), dtype=torch.long, device=self.device)  # index of the token fed
        position = lengths.clone()

        one = _Pass(position, 1, cache, tables, DECODE, prefill=False)

        def decode_step() -> None:
            current = tokens.gather(1, step.view(1, 1).expand(rows, 1)).view(rows)
            hidden = self._forward(current, one)
            token, margin = self._pick(hidden, DECODE)
            at = (step + 1).view(1, 1).expand(rows, 1)
            tokens.scatter_(1, at, token[:, None])
            margins.scatter_(1, at, margin[:, None])
            step.add_(1)
            position.add_(1)

        use_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        run, done = decode_step, 1
        if use_graph and max_new_tokens > 3:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # real steps that also compile and warm the kernels
                for _ in range(2):
                    decode_step()
            torch.cuda.current_stream().wait_stream(side)
            done = 3
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                decode_step()
            run = graph.replay
        stops = torch.tensor(sorted(set(stop_ids)) or [-1], device=self.device)
        while done < max_new_tokens:
            run()
            done += 1
            if done % CHECK_EVERY == 0 and bool(torch.isin(tokens[:, :done], stops).any(-1).all()):
                break
        return Decoded(tokens[:, :done], margins[:, :done])
