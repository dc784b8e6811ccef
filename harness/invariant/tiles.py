"""The fixed launch configurations of the invariant kernels (no Triton needed to read them).

A matrix product's configuration is fixed per phase and never chosen from the row count: that
choice (a cuBLAS heuristic, split-K, autotuning) is what makes outputs batch-dependent. Prefill
and decode may differ, since a value is always made by the same phase: a prompt token's by
prefill, a generated token's by decode.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tiles:
    bm: int  # rows per program
    bn: int  # output columns per program
    bk: int  # the step of the K loop: the one order in which every output sums
    warps: int
    stages: int


PREFILL = Tiles(bm=128, bn=128, bk=64, warps=8, stages=3)
DECODE = Tiles(bm=64, bn=128, bk=64, warps=4, stages=4)
ATTN_BLOCK = 64  # keys per block, prefill and decode; queries per block in prefill
TOP2_BLOCK = 2048  # logits per step of the greedy pick's loop over the vocabulary
