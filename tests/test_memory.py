"""Micro-batches sized to GPU memory: the step (tokens per optimizer step) never changes, only how
much of it one forward/backward holds."""

from __future__ import annotations

from dataclasses import replace

from transformers import Qwen3Config

from benchmarks.gpu_decode import QWEN3_06B
from harness.sft.memory import STATE_BYTES_PER_PARAM, bytes_per_token, fit_memory
from harness.sft.train import FAST, TUTORIAL

QWEN3 = Qwen3Config(**QWEN3_06B)  # the shape the benchmarks measured
N_PARAMS = 596_049_920
GB = 1e9


def test_the_estimate_matches_the_measured_peaks():
    # H200, benchmarks/results: 36.58 GB at 16,302 tokens a step, 91.48 GB at 48,924
    measured = (91.48 - 36.58) * GB / (48_924 - 16_302)
    assert abs(bytes_per_token(QWEN3, "liger") / measured - 1) < 0.05
    # compiled 52.94 GB, eager 84.89 GB at ~32.1k/32.6k tokens: the estimate stays above both
    states = 36.58 * GB - 16_302 * measured
    assert bytes_per_token(QWEN3, "compiled") * 32_117 + states > 52.94 * GB
    assert bytes_per_token(QWEN3, "eager") * 32_551 + states > 84.89 * GB


def step_tokens(s) -> int:
    return s.batch_size * s.grad_accum * s.max_length


def test_a_big_card_keeps_the_chosen_micro_batch():
    logs: list[str] = []
    s = fit_memory(FAST, QWEN3, N_PARAMS, int(140 * GB), logs.append)
    assert (s.batch_size, s.grad_accum) == (4, 1)
    assert "4 x 8192 tokens a micro-batch" in logs[0]


def test_a_smaller_card_accumulates_the_same_step():
    free = STATE_BYTES_PER_PARAM * N_PARAMS + 2.5 * bytes_per_token(QWEN3, "compiled") * 8192
    logs: list[str] = []
    s = fit_memory(FAST, QWEN3, N_PARAMS, int(free / FAST.memory_fraction), logs.append)
    assert (s.batch_size, s.grad_accum) == (2, 2)  # 2.5 fit: the largest divisor of 4 that does
    assert step_tokens(s) == step_tokens(FAST)
    assert "instead of 4 x 1" in logs[0]
    odd = fit_memory(replace(FAST, batch_size=5), QWEN3, N_PARAMS, int(free / 0.85), print)
    assert (odd.batch_size, odd.grad_accum) == (1, 5)


def test_no_room_for_one_sequence_checkpoints_activations():
    s = fit_memory(FAST, QWEN3, N_PARAMS, int(12 * GB), print)
    assert s.activation_checkpointing
    assert (s.batch_size, s.grad_accum) == (1, 4)
    assert step_tokens(s) == step_tokens(FAST)


def test_only_packed_runs_that_ask_are_resized():
    tiny = int(1 * GB)
    assert fit_memory(replace(FAST, memory_fraction=0.0), QWEN3, N_PARAMS, tiny, print) == replace(
        FAST, memory_fraction=0.0
    )
    assert fit_memory(TUTORIAL, QWEN3, N_PARAMS, tiny, print) == TUTORIAL
