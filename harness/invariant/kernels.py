"""Triton kernels whose result for a row never depends on the other rows of the batch.

Every reduction that makes one row's value runs in an order fixed by the kernel alone: matrix
products tile K in fixed `BK` steps with no split-K and one configuration per phase (prefill,
decode), whatever the number of rows; attention reads a sequence's keys from slot 0 of its own
cache row in fixed `BN` blocks with no split of the KV length; norms and the greedy pick reduce
one row per program. No atomics, so reruns are bitwise identical too. The launchers take and fill
plain tensors; `reference.py` computes the same functions with torch for the CPU and for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .tiles import ATTN_BLOCK, TOP2_BLOCK, Tiles

# Multiplies and adds stay separate roundings, as in the torch reference and the model's own
# modules; set explicitly, since Triton's default is changing between versions.
FP_FUSION = False


def _ieee(x: torch.Tensor) -> bool:
    """float32 products in true float32 (Triton's default for them is TF32)."""
    return x.dtype == torch.float32


# --------------------------------------------------------------------------- matrix products


@triton.jit(do_not_specialize=["M"])
def _linear_kernel(
    a_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    M,
    N,
    K,
    stride_a,
    stride_o,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    row_ok = rows < M
    col_ok = cols < N
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        k_ok = (k0 + ks) < K
        a = tl.load(
            a_ptr + rows[:, None].to(tl.int64) * stride_a + (k0 + ks)[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + cols[:, None].to(tl.int64) * K + (k0 + ks)[None, :],
            mask=col_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        if IEEE:
            acc = tl.dot(a, tl.trans(w), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, tl.trans(w), acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(
        out_ptr + rows[:, None].to(tl.int64) * stride_o + cols[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor, t: Tiles
) -> None:
    """out[:, :N] = x @ weight.T + bias, accumulated in float32; `out` may be a column slice."""
    m, k = x.shape
    n = weight.shape[0]
    assert weight.is_contiguous() and x.stride(1) == 1 and out.stride(1) == 1
    grid = (triton.cdiv(m, t.bm), triton.cdiv(n, t.bn))
    _linear_kernel[grid](
        x,
        weight,
        bias if bias is not None else weight,
        out,
        m,
        n,
        k,
        x.stride(0),
        out.stride(0),
        HAS_BIAS=bias is not None,
        IEEE=_ieee(x),
        BM=t.bm,
        BN=t.bn,
        BK=t.bk,
        num_warps=t.warps,
        num_stages=t.stages,
        enable_fp_fusion=FP_FUSION,
    )


# --------------------------------------------------------------------------- norms, activations


@triton.jit(do_not_specialize=["rows"])
def _add_rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    rows,
    H,
    eps,
    HAS_RES: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < H
    dt = out_ptr.dtype.element_ty
    h = tl.load(x_ptr + row * H + cols, mask=ok, other=0.0).to(tl.float32)
    if HAS_RES:  # the residual stream: h = res + x, rounded as the model's dtype rounds it
        h = (h + tl.load(res_ptr + row * H + cols, mask=ok, other=0.0).to(tl.float32)).to(dt)
        tl.store(res_ptr + row * H + cols, h, mask=ok)
        h = h.to(tl.float32)
    var = tl.sum(h * h, axis=0) / H
    y = (h * tl.rsqrt(var + eps)).to(dt).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * H + cols, (y * w).to(dt), mask=ok)


def add_rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    out: torch.Tensor,
    residual: torch.Tensor | None = None,
) -> None:
    """out = rms_norm(residual += x) (or of x alone), one row per program; rows contiguous."""
    rows, h = x.shape
    _add_rms_norm_kernel[(rows,)](
        x,
        residual if residual is not None else x,
        weight,
        out,
        rows,
        h,
        eps,
        HAS_RES=residual is not None,
        BLOCK=triton.next_power_of_2(h),
        num_warps=4,
        enable_fp_fusion=FP_FUSION,
    )


@triton.jit
def _silu_mul_kernel(gu_ptr, out_ptr, total, inter, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = i < total
    row = i // inter
    col = i % inter
    dt = out_ptr.dtype.element_ty
    g = tl.load(gu_ptr + row * 2 * inter + col, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + row * 2 * inter + inter + col, mask=ok, other=0.0).to(tl.float32)
    s = (g * tl.sigmoid(g)).to(dt).to(tl.float32)
    tl.store(out_ptr + i, (s * u).to(dt), mask=ok)


def silu_mul(gate_up: torch.Tensor, out: torch.Tensor) -> None:
    """out = silu(gate) * up, where gate_up holds [gate | up] per row."""
    rows, inter = out.shape
    total = rows * inter
    _silu_mul_kernel[(triton.cdiv(total, 1024),)](
        gate_up, out, total, inter, BLOCK=1024, enable_fp_fusion=FP_FUSION
    )


# --------------------------------------------------------------------------- rotary + cache


@triton.jit(do_not_specialize=["per_row"])
def _rope_cache_kernel(
    qkv_ptr,
    pos_ptr,
    cos_ptr,
    sin_ptr,
    qn_ptr,
    kn_ptr,
    q_out_ptr,
    k_cache_ptr,
    v_cache_ptr,
    per_row,
    slots,
    eps,
    HQ: tl.constexpr,
    HKV: tl.constexpr,
    D: tl.constexpr,
    QK_NORM: tl.constexpr,
):
    tok = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    seq = tok // per_row
    pos = tl.load(pos_ptr + tok).to(tl.int64)
    half = tl.arange(0, D // 2)
    dt = q_out_ptr.dtype.element_ty
    width = (HQ + 2 * HKV) * D
    base = qkv_ptr + tok * width + head * D
    x1 = tl.load(base + half).to(tl.float32)
    x2 = tl.load(base + D // 2 + half).to(tl.float32)
    if QK_NORM:  # Qwen3: RMSNorm over each head before the rotation
        var = (tl.sum(x1 * x1, axis=0) + tl.sum(x2 * x2, axis=0)) / D
        r = tl.rsqrt(var + eps)
        is_q = head < HQ
        w1 = tl.where(is_q, tl.load(qn_ptr + half), tl.load(kn_ptr + half)).to(tl.float32)
        w2 = tl.where(is_q, tl.load(qn_ptr + D // 2 + half), tl.load(kn_ptr + D // 2 + half)).to(
            tl.float32
        )
        x1 = (x1 * r).to(dt).to(tl.float32) * w1
        x2 = (x2 * r).to(dt).to(tl.float32) * w2
        x1 = x1.to(dt).to(tl.float32)
        x2 = x2.to(dt).to(tl.float32)
    c1 = tl.load(cos_ptr + pos * D + half).to(tl.float32)
    c2 = tl.load(cos_ptr + pos * D + D // 2 + half).to(tl.float32)
    s1 = tl.load(sin_ptr + pos * D + half).to(tl.float32)
    s2 = tl.load(sin_ptr + pos * D + D // 2 + half).to(tl.float32)
    # (x * cos) + (rotate_half(x) * sin), each product rounded as the model's dtype rounds it
    y1 = ((x1 * c1).to(dt).to(tl.float32) + (-x2 * s1).to(dt).to(tl.float32)).to(dt)
    y2 = ((x2 * c2).to(dt).to(tl.float32) + (x1 * s2).to(dt).to(tl.float32)).to(dt)
    if head < HQ:
        q_out = q_out_ptr + (tok * HQ + head) * D
        tl.store(q_out + half, y1)
        tl.store(q_out + D // 2 + half, y2)
    else:
        kv = head - HQ
        slot = ((seq * HKV + kv) * slots + pos) * D
        tl.store(k_cache_ptr + slot + half, y1)
        tl.store(k_cache_ptr + slot + D // 2 + half, y2)
        v_src = qkv_ptr + tok * width + (HQ + HKV + kv) * D
        v1 = tl.load(v_src + half)
        v2 = tl.load(v_src + D // 2 + half)
        tl.store(v_cache_ptr + slot + half, v1)
        tl.store(v_cache_ptr + slot + D // 2 + half, v2)


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
    """Rotate (and for Qwen3 normalise) q and k; q to `q_out` [tokens, HQ, D], k and v into the
    cache [rows, HKV, slots, D] at their positions; token t belongs to row t // per_row."""
    tokens = qkv.shape[0]
    _, hkv, slots, d = k_cache.shape
    hq = q_out.shape[1]
    norm = q_norm is not None
    _rope_cache_kernel[(tokens, hq + hkv)](
        qkv,
        positions,
        cos,
        sin,
        q_norm if norm else cos,
        k_norm if norm else cos,
        q_out,
        k_cache,
        v_cache,
        per_row,
        slots,
        eps,
        HQ=hq,
        HKV=hkv,
        D=d,
        QK_NORM=norm,
        num_warps=1,
        enable_fp_fusion=FP_FUSION,
    )


# --------------------------------------------------------------------------- attention


@triton.jit
def _online_block(q, k, v, s_mask, m, denom, acc, scale, IEEE: tl.constexpr):
    """One key block of the online softmax: exact no-op for a fully masked block."""
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    else:
        s = tl.dot(q, tl.trans(k)) * scale
    s = tl.where(s_mask, s, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, axis=1))
    p = tl.exp(s - m_new[:, None])
    alpha = tl.exp(m - m_new)
    denom = denom * alpha + tl.sum(p, axis=1)
    pv = tl.dot(p, v, input_precision="ieee") if IEEE else tl.dot(p.to(v.dtype), v)
    acc = acc * alpha[:, None] + pv
    return m_new, denom, acc


@triton.jit(do_not_specialize=["length", "slots"])
def _prefill_attention_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    out_ptr,
    length,
    slots,
    scale,
    HQ: tl.constexpr,
    HKV: tl.constexpr,
    D: tl.constexpr,
    BLOCK: tl.constexpr,
    IEEE: tl.constexpr,
):
    qb = tl.program_id(0)
    seq = tl.program_id(1).to(tl.int64)
    head = tl.program_id(2)
    kv = head // (HQ // HKV)
    t = qb * BLOCK + tl.arange(0, BLOCK)
    d = tl.arange(0, D)
    t_ok = t < length
    tok = seq * length + t
    q = tl.load(q_ptr + (tok[:, None] * HQ + head) * D + d[None, :], mask=t_ok[:, None], other=0.0)
    cache = (seq * HKV + kv) * slots * D
    m = tl.full((BLOCK,), float("-inf"), tl.float32)
    denom = tl.zeros((BLOCK,), tl.float32)
    acc = tl.zeros((BLOCK, D), tl.float32)
    end = tl.minimum((qb + 1) * BLOCK, length)
    for start in range(0, end, BLOCK):
        n = start + tl.arange(0, BLOCK)
        n_ok = n < length
        k = tl.load(
            k_cache_ptr + cache + n[:, None] * D + d[None, :], mask=n_ok[:, None], other=0.0
        )
        v = tl.load(
            v_cache_ptr + cache + n[:, None] * D + d[None, :], mask=n_ok[:, None], other=0.0
        )
        causal = (n[None, :] <= t[:, None]) & n_ok[None, :]
        m, denom, acc = _online_block(q, k, v, causal, m, denom, acc, scale, IEEE)
    out = acc / denom[:, None]
    tl.store(
        out_ptr + (tok[:, None] * HQ + head) * D + d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=t_ok[:, None],
    )


def prefill_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, scale: float, out: torch.Tensor
) -> None:
    """Causal attention of every prompt token: q [rows * length, HQ, D] in row-major token
    order, keys from each row's cache slots 0..length-1; writes out [rows * length, HQ, D]."""
    rows, hkv, slots, d = k_cache.shape
    hq = q.shape[1]
    length = q.shape[0] // rows
    grid = (triton.cdiv(length, ATTN_BLOCK), rows, hq)
    _prefill_attention_kernel[grid](
        q,
        k_cache,
        v_cache,
        out,
        length,
        slots,
        scale,
        HQ=hq,
        HKV=hkv,
        D=d,
        BLOCK=ATTN_BLOCK,
        IEEE=_ieee(q),
        num_warps=4,
        enable_fp_fusion=FP_FUSION,
    )


@triton.jit(do_not_specialize=["slots"])
def _decode_attention_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    pos_ptr,
    out_ptr,
    slots,
    scale,
    HQ: tl.constexpr,
    HKV: tl.constexpr,
    GROUP: tl.constexpr,
    BG: tl.constexpr,
    D: tl.constexpr,
    BLOCK: tl.constexpr,
    IEEE: tl.constexpr,
):
    seq = tl.program_id(0).to(tl.int64)
    kv = tl.program_id(1)
    pos = tl.load(pos_ptr + seq)
    g = tl.arange(0, BG)
    d = tl.arange(0, D)
    g_ok = g < GROUP
    heads = kv * GROUP + g
    q = tl.load(q_ptr + (seq * HQ + heads[:, None]) * D + d[None, :], mask=g_ok[:, None], other=0.0)
    cache = (seq * HKV + kv) * slots * D
    m = tl.full((BG,), float("-inf"), tl.float32)
    denom = tl.zeros((BG,), tl.float32)
    acc = tl.zeros((BG, D), tl.float32)
    for start in range(0, pos + 1, BLOCK):
        n = start + tl.arange(0, BLOCK)
        n_ok = n <= pos
        k = tl.load(
            k_cache_ptr + cache + n[:, None] * D + d[None, :], mask=n_ok[:, None], other=0.0
        )
        v = tl.load(
            v_cache_ptr + cache + n[:, None] * D + d[None, :], mask=n_ok[:, None], other=0.0
        )
        m, denom, acc = _online_block(q, k, v, n_ok[None, :], m, denom, acc, scale, IEEE)
    out = acc / denom[:, None]
    tl.store(
        out_ptr + (seq * HQ + heads[:, None]) * D + d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=g_ok[:, None],
    )


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    positions: torch.Tensor,
    scale: float,
    out: torch.Tensor,
) -> None:
    """One new token per row: q [rows, HQ, D] attends to its row's slots 0..position (no split
    of the KV length, so the order of the sum is the row's own); writes out [rows, HQ, D]."""
    rows, hkv, slots, d = k_cache.shape
    hq = q.shape[1]
    group = hq // hkv
    _decode_attention_kernel[(rows, hkv)](
        q,
        k_cache,
        v_cache,
        positions,
        out,
        slots,
        scale,
        HQ=hq,
        HKV=hkv,
        GROUP=group,
        BG=max(16, triton.next_power_of_2(group)),  # tl.dot takes 16 rows or more
        D=d,
        BLOCK=ATTN_BLOCK,
        IEEE=_ieee(q),
        num_warps=4,
        enable_fp_fusion=FP_FUSION,
    )


# --------------------------------------------------------------------------- greedy pick


@triton.jit
def _top2_kernel(logits_ptr, token_ptr, margin_ptr, V, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    best = float("-inf")
    second = float("-inf")
    best_at = 0
    for start in range(0, V, BLOCK):
        cols = start + idx
        x = tl.load(logits_ptr + row * V + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        top = tl.max(x, axis=0)
        at = tl.min(tl.where(x == top, cols, V), axis=0)  # ties: the lowest index
        runner = tl.max(tl.where(cols == at, float("-inf"), x), axis=0)
        if top > best:
            second = tl.maximum(best, runner)
            best = top
            best_at = at
        else:
            second = tl.maximum(second, top)
    tl.store(token_ptr + row, best_at.to(tl.int64))
    tl.store(margin_ptr + row, best - second)


def top2(logits: torch.Tensor, tokens: torch.Tensor, margins: torch.Tensor) -> None:
    """The greedy token of each row (lowest index among equal maxima) and the gap between the
    best and second-best logit (0 for a tie)."""
    rows, v = logits.shape
    _top2_kernel[(rows,)](
        logits, tokens, margins, v, BLOCK=TOP2_BLOCK, num_warps=8, enable_fp_fusion=FP_FUSION
    )
