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

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from .layout import Layer, Layout, Unsupported, layout_of
from .tiles import ATTN_BLOCK, DECODE, PREFILL

CHECK_EVERY = 16  # decode steps between checks (one host sync) for rows that have finished
RETIRE_AT = 0.75  # shrink the batch when at most this share of its rows is still running
RETIRE_MIN_STEPS = 32  # ... and at least this many steps are left (a shrink recaptures the graph)
RETIRE_CHUNK = 32  # cache rows moved per copy when the batch shrinks (bounds the copy's memory)
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
    # [rows, steps] generated ids; a row runs on past its stop token or limit until the next
    # check, then holds pad_id
    tokens: torch.Tensor
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
        max_new_tokens: int | list[int],
        stop_ids: list[int],
        *,
        pad_id: int = 0,
        cuda_graph: bool | None = None,
    ) -> Decoded:
        """Greedy continuations of unpadded prompts (token id lists), each up to its own limit
        (`max_new_tokens`: one for all or one per prompt).

        Rows that have stopped or reached their limit leave the batch at the next check, so the
        later steps cost what the rows still running need rather than what the longest-limited
        row's batch needed. A row's tokens do not depend on the rows beside it, so leaving
        changes none of them. Past the point where a row left, its tokens are `pad_id`.
        """
        rows = len(prompts)
        limits = [max_new_tokens] * rows if isinstance(max_new_tokens, int) else max_new_tokens
        if len(limits) != rows or min(limits, default=1) < 1:
            raise ValueError(f"expected {rows} limits of 1 or more, got {limits!r}")
        longest = max(limits)
        width = max(len(p) for p in prompts)
        slots = width + longest
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
        tokens = torch.full((rows, longest), pad_id, dtype=torch.long, device=self.device)
        margins = torch.zeros(rows, longest, dtype=torch.float32, device=self.device)

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
        if longest == 1:
            return Decoded(tokens, margins)
        use_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        batch = _Batch.start(tokens, margins, lengths, limits, stop_ids)
        done = self._decode(batch, cache, tables, use_graph)
        batch.write_back()
        return Decoded(tokens[:, :done], margins[:, :done])

    def _decode(self, batch: _Batch, cache: _Cache, tables: Any, use_graph: bool) -> int:
        """Decode steps until every row has stopped or reached its limit, shrinking the batch
        as rows leave; returns the steps taken by the longest-running row."""
        done, pool = 1, None
        while True:
            rows, horizon = batch.rows, max(batch.limits_host)
            graph = use_graph and horizon - done > 3
            run, done, pool = self._stepper(batch, cache, tables, done, graph, pool)
            checked = done
            while done < horizon:
                run()
                done += 1
                if done - checked >= CHECK_EVERY or done == horizon:
                    keep = batch.running(checked, done)
                    checked = done
                    if not keep:
                        return done
                    if len(keep) <= RETIRE_AT * rows and horizon - done >= RETIRE_MIN_STEPS:
                        batch.retire(keep, cache)
                        break
            else:
                return done

    def _stepper(
        self, batch: _Batch, cache: _Cache, tables: Any, done: int, graph: bool, pool: Any
    ) -> tuple[Callable[[], None], int, Any]:
        """One decode step of the batch as it is now, as a function, and the tokens done after
        it was made: with `graph`, a CUDA graph's replay, captured after two real steps that
        also compile and warm the kernels (`pool`: the memory pool of the graph before)."""
        rows, tokens, margins, position = batch.rows, batch.tokens, batch.margins, batch.position
        # the batch keeps it alive: a captured graph holds its address, not a reference to it
        step = batch.step = torch.tensor(done - 1, device=self.device)  # index of the token fed
        part = _Cache(cache.k[:, :rows], cache.v[:, :rows])  # the batch's rows come first
        one = _Pass(position, 1, part, tables, DECODE, prefill=False)

        def decode_step() -> None:
            current = tokens.gather(1, step.view(1, 1).expand(rows, 1)).view(rows)
            hidden = self._forward(current, one)
            token, margin = self._pick(hidden, DECODE)
            at = (step + 1).view(1, 1).expand(rows, 1)
            tokens.scatter_(1, at, token[:, None])
            margins.scatter_(1, at, margin[:, None])
            step.add_(1)
            position.add_(1)

        if not graph:
            return decode_step, done, pool
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                decode_step()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured, pool=pool):
            decode_step()
        return captured.replay, done + 2, captured.pool()


@dataclass
class _Batch:
    """The rows still decoding: their tokens, margins and positions, which original row each
    is, and its limit. Their KV cache rows are the first `rows` of the cache; `out_*` hold every
    original row."""

    out_tokens: torch.Tensor  # [all rows, longest]
    out_margins: torch.Tensor
    tokens: torch.Tensor  # [rows, longest]
    margins: torch.Tensor
    position: torch.Tensor  # the slot each row writes next
    origin: torch.Tensor  # original row index of each row
    limits: torch.Tensor
    limits_host: list[int]
    stopped: torch.Tensor  # has emitted a stop token
    stop_ids: torch.Tensor
    step: torch.Tensor | None = None  # index of the token the next decode step feeds

    @classmethod
    def start(
        cls,
        tokens: torch.Tensor,
        margins: torch.Tensor,
        lengths: torch.Tensor,
        limits: list[int],
        stop_ids: list[int],
    ) -> _Batch:
        device = tokens.device
        return cls(
            tokens,
            margins,
            tokens,
            margins,
            lengths.clone(),
            torch.arange(len(limits), device=device),
            torch.tensor(limits, device=device),
            list(limits),
            torch.zeros(len(limits), dtype=torch.bool, device=device),
            torch.tensor(sorted(set(stop_ids)) or [-1], device=device),
        )

    @property
    def rows(self) -> int:
        return len(self.limits_host)

    def running(self, since: int, done: int) -> list[int]:
        """Rows that have neither stopped nor reached their limit after `done` tokens (one sync)."""
        self.stopped |= torch.isin(self.tokens[:, since:done], self.stop_ids).any(-1)
        going = ~self.stopped & (self.limits > done)
        return going.nonzero().view(-1).tolist()

    def retire(self, keep: list[int], cache: _Cache) -> None:
        """Keep only rows `keep` (ascending): their cache rows move to the front, in place and in
        ascending order, so no row is overwritten before it has moved."""
        self.write_back()
        index = torch.tensor(keep, device=self.tokens.device)
        for start in range(0, len(keep), RETIRE_CHUNK):
            src = index[start : start + RETIRE_CHUNK]
            end = start + src.numel()
            cache.k[:, start:end] = cache.k[:, src]
            cache.v[:, start:end] = cache.v[:, src]
        self.tokens, self.margins = self.tokens[index], self.margins[index]
        self.position, self.origin = self.position[index], self.origin[index]
        self.limits, self.stopped = self.limits[index], self.stopped[index]
        self.limits_host = [self.limits_host[i] for i in keep]

    def write_back(self) -> None:
        """Copy the rows' tokens and margins into the full output."""
        if self.tokens is not self.out_tokens:
            self.out_tokens[self.origin] = self.tokens
            self.out_margins[self.origin] = self.margins
