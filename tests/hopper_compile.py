"""Compile every invariant kernel for an H100/H200 (sm_90) without a GPU; print what each uses.

Run by tests/test_invariant.py in a process without TRITON_INTERPRET. One line per kernel:
`name: wgmma` (Hopper's warpgroup matrix instruction), `mma` (the older one) or `ok`.
"""

from __future__ import annotations

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from harness.invariant import kernels as k
from harness.invariant.tiles import ATTN_BLOCK, DECODE, PREFILL, TOP2_BLOCK

HOPPER = GPUTarget("cuda", 90, 32)


def build(name: str, fn, signature: dict, constants: dict, options: dict) -> None:
    signature = {**signature, **dict.fromkeys(constants, "constexpr")}
    source = ASTSource(fn=fn, signature=signature, constexprs=constants)
    options = {**options, "enable_fp_fusion": k.FP_FUSION}  # as the launchers run them
    ptx = triton.compile(source, target=HOPPER, options=options).asm["ptx"]
    kind = "wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "ok"
    print(f"{name}: {kind}", flush=True)


def kernels(dt: str, label: str) -> list[tuple]:
    """(name, kernel, argument types, constants, launch options) for one dtype."""
    ieee = label == "fp32"
    ptr = lambda *names: dict.fromkeys(names, dt)  # noqa: E731
    ints = lambda *names: dict.fromkeys(names, "i32")  # noqa: E731
    heads = {"HQ": 16, "HKV": 8, "D": 128}
    attn = ptr("q_ptr", "k_cache_ptr", "v_cache_ptr", "out_ptr")
    out = [
        (
            f"linear {label} {phase}",
            k._linear_kernel,
            {
                **ptr("a_ptr", "w_ptr", "bias_ptr", "out_ptr"),
                **ints("M", "N", "K", "stride_a", "stride_o"),
            },
            {"HAS_BIAS": True, "IEEE": ieee, "BM": t.bm, "BN": t.bn, "BK": t.bk},
            {"num_warps": t.warps, "num_stages": t.stages},
        )
        for phase, t in (("prefill", PREFILL), ("decode", DECODE))
    ]
    return out + [
        (
            f"prefill attention {label}",
            k._prefill_attention_kernel,
            {**attn, **ints("length", "slots"), "scale": "fp32"},
            {**heads, "BLOCK": ATTN_BLOCK, "IEEE": ieee},
            {"num_warps": 4},
        ),
        (
            f"decode attention {label}",
            k._decode_attention_kernel,
            {**attn, "pos_ptr": "*i64", **ints("slots"), "scale": "fp32"},
            {**heads, "GROUP": 2, "BG": 16, "BLOCK": ATTN_BLOCK, "IEEE": ieee},
            {"num_warps": 4},
        ),
        (
            f"add rms norm {label}",
            k._add_rms_norm_kernel,
            {**ptr("x_ptr", "res_ptr", "w_ptr", "out_ptr"), **ints("rows", "H"), "eps": "fp32"},
            {"HAS_RES": True, "BLOCK": 1024},
            {},
        ),
        (
            f"silu mul {label}",
            k._silu_mul_kernel,
            {**ptr("gu_ptr", "out_ptr"), **ints("total", "inter")},
            {"BLOCK": 1024},
            {},
        ),
        (
            f"rope into cache {label}",
            k._rope_cache_kernel,
            {
                **ptr("qkv_ptr", "cos_ptr", "sin_ptr", "qn_ptr", "kn_ptr", "q_out_ptr"),
                **ptr("k_cache_ptr", "v_cache_ptr"),
                "pos_ptr": "*i64",
                **ints("per_row", "slots"),
                "eps": "fp32",
            },
            {**heads, "QK_NORM": True},
            {"num_warps": 1},
        ),
    ]


def main() -> None:
    for dt, label in (("*bf16", "bf16"), ("*fp32", "fp32")):
        for spec in kernels(dt, label):
            build(*spec)
    build(
        "top2",
        k._top2_kernel,
        {"logits_ptr": "*fp32", "token_ptr": "*i64", "margin_ptr": "*fp32", "V": "i32"},
        {"BLOCK": TOP2_BLOCK},
        {"num_warps": 8},
    )


if __name__ == "__main__":
    main()
