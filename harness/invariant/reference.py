"""The kernels of `kernels.py` written with torch: the CPU path, and the oracle in tests.

Same signatures, same roundings (products and sums in float32, rounded to the model's dtype where
the model's own modules round), same cache layout. torch's CPU kernels make no promise about the
order of a sum across batch shapes, so this path is exact where the CPU is (float32, measured
batched == one at a time), not by construction; the Triton kernels are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .tiles import Tiles


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor, t: Tiles
) -> None:
    y = x.float() @ weight.float().T
    if bias is not None:
        y = y + bias.float()
    out.copy_(y.to(out.dtype))


def add_rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor,
    residual: torch.Tensor | None = None,
) -> None:
    h = x
    if residual is not None:
        residual.copy_((residual.float() + x.float()).to(x.dtype))
        h = residual
    h = h.float()
    y = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(out.dtype)
    out.copy_((y.float() * weight.float()).to(out.dtype))


def silu_mul(gate_up: torch.Tensor, out: torch.Tensor) -> None:
    inter = out.shape[1]
    g, u = gate_up[:, :inter].float(), gate_up[:, inter:].float()
    out.copy_((F.silu(g).to(out.dtype).float() * u).to(out.dtype))


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float, dt: torch.dtype) -> torch.Tensor:
    y = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dt).float()
    return (y * w.float()).to(dt).float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dt: torch.dtype):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos.float(), sin.float()

    def r(t: torch.Tensor) -> torch.Tensor:
        return t.to(dt).float()

    y1 = r(x1 * c[..., :half]) + r(-x2 * s[..., :half])
    y2 = r(x2 * c[..., half:]) + r(x1 * s[..., half:])
    return torch.cat([y1, y2], dim=-1).to(dt)


def rope_into_cache(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    per_row: int,
    cos: torch.Tensor,
    sin: torch.Tensor,
    q_norm: torch.Tensor | None,
    k_norm: torch.Tensor | None,
    eps: float,
    q_out: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
) -> None:
    tokens = qkv.shape[0]
    _, hkv, _, d = k_cache.shape
    hq = q_out.shape[1]
    dt = q_out.dtype
    q = qkv[:, : hq * d].float().view(tokens, hq, d)
    k = qkv[:, hq * d : (hq + hkv) * d].float().view(tokens, hkv, d)
    v = qkv[:, (hq + hkv) * d :].view(tokens, hkv, d)
    if q_norm is not None:
        q, k = _rms(q, q_norm, eps, dt), _rms(k, k_norm, eps, dt)
    pos = positions.long()
    c, s = cos[pos][:, None], sin[pos][:, None]
    q_out.copy_(_rotate(q, c, s, dt))
    rows = torch.arange(tokens, device=qkv.device) // per_row
    k_cache[rows, :, pos] = _rotate(k, c, s, dt)
    v_cache[rows, :, pos] = v.to(dt)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float):
    """q [rows, H, Q, D], k/v [rows, HKV, S, D], mask [rows or 1, 1, Q, S] -> [rows, Q, H, D]."""
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    s = (q.float() @ k.transpose(-1, -2)) * scale
    p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    if q.dtype != torch.float32:  # the kernel multiplies probabilities in the model's dtype
        p = p.to(q.dtype).float()
    return (p @ v).transpose(1, 2)


def prefill_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scale: float, out: torch.Tensor
) -> None:
    rows, _, _, d = k_cache.shape
    hq = q.shape[1]
    length = q.shape[0] // rows
    qs = q.view(rows, length, hq, d).transpose(1, 2)
    t = torch.arange(length, device=q.device)
    causal = (t[None, :] <= t[:, None])[None, None]
    o = _attend(qs, k_cache[:, :, :length], v_cache[:, :, :length], causal, scale)
    out.copy_(o.reshape(rows * length, hq, d).to(out.dtype))


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    positions: torch.Tensor,
    scale: float,
    out: torch.Tensor,
) -> None:
    rows, _, slots, d = k_cache.shape
    hq = q.shape[1]
    seen = torch.arange(slots, device=q.device)[None, :] <= positions.long()[:, None]
    o = _attend(q.view(rows, hq, 1, d), k_cache, v_cache, seen[:, None, None, :], scale)
    out.copy_(o.reshape(rows, hq, d).to(out.dtype))


def top2(logits: torch.Tensor, tokens: torch.Tensor, margins: torch.Tensor) -> None:
    x = logits.float()
    best, at = x.max(dim=-1)  # torch returns the lowest index among equal maxima
    runner = x.scatter(-1, at[:, None], float("-inf")).max(dim=-1).values
    tokens.copy_(at)
    margins.copy_(best - runner)
