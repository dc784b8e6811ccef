"""Padding-free attention for packed SFT batches: each packed row attends only to itself.

TRL's padding-free collator flattens a packed batch into one sequence and passes the row
boundaries as `cu_seq_lens_q`. transformers' SDPA path turns them into a dense block mask (memory
and time grow with the square of the flattened length) and its flex path builds a block mask and
compiles a kernel per shape; flash-attn is a separate install. PyTorch's own `varlen_attn` (Flash
Attention over variable-length sequences, CUDA) takes the boundaries directly, so this registers
it with transformers under `ATTENTION`. Elsewhere (CPU) each row runs causal SDPA on its own:
the same result, slower.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION = "harness_varlen"


@torch.compiler.disable  # like `_varlen`: one graph break, not a recompilation per row count
def _per_row(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, scale: float):
    """Causal SDPA row by row; q, k, v are (1, heads, tokens, dim)."""
    outs = []
    bounds = cu.tolist()
    for a, b in zip(bounds, bounds[1:], strict=False):
        outs.append(
            F.scaled_dot_product_attention(
                q[:, :, a:b],
                k[:, :, a:b],
                v[:, :, a:b],
                is_causal=True,
                scale=scale,
                enable_gqa=True,
            )
        )
    return torch.cat(outs, dim=2)


def _unpacked(query, key, value, attention_mask, scale: float) -> torch.Tensor:
    """One causal sequence per batch row (generation, evaluation); no padding masks."""
    if attention_mask is not None and attention_mask.ndim == 2 and not bool(attention_mask.all()):
        raise ValueError(f"{ATTENTION} takes packed or unpadded batches, not padding masks")
    q_len, k_len = query.shape[2], key.shape[2]
    mask = None  # causal when the query covers the keys, else causal with an offset (KV cache)
    if q_len != k_len:
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=mask is None, scale=scale, enable_gqa=True
    )


def _boundaries(cu: torch.Tensor | None, position_ids: torch.Tensor | None) -> torch.Tensor | None:
    """Row starts of a packed batch: TRL's cu_seq_lens, else where position ids restart."""
    if cu is not None:
        return cu
    if position_ids is None or position_ids.shape[0] != 1:
        return None
    starts = (position_ids[0] == 0).nonzero().flatten()
    if starts.numel() <= 1:
        return None
    end = torch.tensor([position_ids.shape[1]], device=starts.device)
    return torch.cat([starts, end])


def varlen_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    max_length_q: int | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: (batch, heads, tokens, dim) in, (batch, tokens, heads,
    dim) out."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    cu = _boundaries(cu_seq_lens_q, position_ids)
    if cu is None or query.shape[2] != key.shape[2]:
        return _unpacked(query, key, value, attention_mask, scale).transpose(
            1, 2
        ).contiguous(), None
    if query.shape[0] != 1:
        raise ValueError(f"{ATTENTION}: a packed batch is one flattened row, got {query.shape[0]}")
    cu = cu.to(device=query.device, dtype=torch.int32)
    # Flash kernels take half precision; under autocast q and k leave Qwen3's norms in float32
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else query.dtype
    half = dtype in (torch.bfloat16, torch.float16)
    if not query.is_cuda or not half or _varlen_options() is None:  # torch < 2.9 has no varlen
        return _per_row(query, key, value, cu, scale).transpose(1, 2).contiguous(), None
    longest = int(max_length_q) if max_length_q is not None else int(cu.diff().max())
    q, k, v = (t[0].transpose(0, 1).to(dtype) for t in (query, key, value))  # (tokens, heads, dim)
    return _kernel()(q, k, v, cu, longest, scale).unsqueeze(0), None


def _load_varlen() -> tuple[Any, set[str]] | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, set(inspect.signature(varlen_attn).parameters)


_VARLEN = _load_varlen()  # once, at import: not re-read through `inspect` by each compilation


def _varlen_options() -> tuple[Any, set[str]] | None:
    return _VARLEN


# native: grouped key/value heads go to the kernel unrepeated (False once torch refused them);
# settled: the kernel has answered whether it takes them, so the call needs no fallback
_GQA = {"native": True, "settled": False}
_TRACED = {"on": True}


def use_native_gqa(native: bool) -> None:
    """Pass grouped key/value heads to the kernel as they are (default) or repeated (to compare)."""
    _GQA.update(native=native, settled=False)


def native_gqa() -> bool:
    """Whether grouped key/value heads go to the kernel unrepeated (False after a refusal)."""
    return _GQA["native"]


def trace_attention(on: bool) -> None:
    """Whether compiled layers trace the kernel (default) or break their graph around it (the
    benchmark's harness-attn-graph-break configuration, to compare)."""
    _TRACED["on"] = on


def settle_gqa(device: str, head_dim: int) -> bool:
    """Ask the kernel once, eagerly, whether it takes fewer key/value heads than query heads, so
    that compiled layers can trace it (`varlen_attn` is a custom op with a fake and a backward):
    one graph a layer, the casts and transposes on either side fused into the layer's kernels
    (+12% tokens/s on a Qwen3-0.6B shape, benchmarks/RESULTS.md). Until settled, attention is a
    graph break. The answer is the kernel's, not a model's: one per process. Returns whether the
    kernel is traced."""
    if _varlen_options() is None or not device.startswith("cuda"):
        return False
    if not torch.cuda.is_bf16_supported():  # training runs in float32: row-by-row SDPA
        return False
    if not _GQA["settled"]:

        def probe(kv_heads: int) -> tuple:
            q = torch.zeros(8, 2, head_dim, device=device, dtype=torch.bfloat16)
            kv = torch.zeros(8, kv_heads, head_dim, device=device, dtype=torch.bfloat16)
            return q, kv, kv, torch.tensor([0, 8], device=device, dtype=torch.int32), 8, 1.0

        _varlen(*probe(2))  # equal heads: an error here is the kernel's own, raised as it is
        _varlen(*probe(1))  # unequal: taken, or refused once and repeated from then on
        _GQA["settled"] = True
    return _TRACED["on"]


def _kernel() -> Any:
    """The traced call once the kernel has answered about grouped heads, else the graph break."""
    return _varlen_call if _TRACED["on"] and _GQA["settled"] else _varlen


def _varlen_call(q, k, v, cu: torch.Tensor, longest: int, scale: float) -> torch.Tensor:
    """torch's varlen_attn, causal, across its versions' keywords (2.9-2.10: is_causal).

    Grouped-query attention goes to the Flash kernel as it is (it reads each key/value head for
    its group of query heads): repeating the heads costs two copies forward and two reductions
    backward per layer, ~10% of a Qwen3-0.6B step. torch 2.11's varlen_attn has no enable_gqa
    keyword; where it refuses unequal heads, the heads are repeated. Once settled, the call has
    no try: a compiled layer traces it."""
    varlen_attn, params = _varlen_options()  # type: ignore[misc]
    kwargs: dict[str, Any] = {"scale": scale}
    if "window_size" in params:
        kwargs["window_size"] = (-1, 0)
    else:
        kwargs["is_causal"] = True
    if k.shape[1] != q.shape[1] and _GQA["native"]:
        if "enable_gqa" in params:
            return varlen_attn(q, k, v, cu, cu, longest, longest, enable_gqa=True, **kwargs)
        if _GQA["settled"]:
            return varlen_attn(q, k, v, cu, cu, longest, longest, **kwargs)
        try:
            out = varlen_attn(q, k, v, cu, cu, longest, longest, **kwargs)
            _GQA["settled"] = True
            return out
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, ValueError) as e:  # this torch checks the head counts
            _GQA.update(native=False, settled=True)
            warnings.warn(f"{ATTENTION}: key/value heads repeated ({e})", stacklevel=2)
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    return varlen_attn(q, k, v, cu, cu, longest, longest, **kwargs)


# a graph break: compiled regions around it, the kernel as it is (until GQA is settled)
_varlen = torch.compiler.disable(_varlen_call)


def register() -> str:
    """Make `ATTENTION` a valid `attn_implementation` (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, varlen_attention)
    # No mask function: registered with one, the model would search the position ids of every
    # mask-less (packed) batch for packed rows and read the result back (a GPU sync a forward).
    # Without one the model passes this attention no mask at all: packed rows get their
    # boundaries from the batch, and right-padded training batches stay correct (causal
    # attention never sees the pads that follow a row); left-padded batches (generation) would
    # not, so this attention is for training only (`train` restores the model's own to save).
    return ATTENTION
