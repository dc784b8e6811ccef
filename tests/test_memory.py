"""Micro-batches sized to GPU memory: the step (tokens per optimizer step) never changes, only how
much of it one forward/backward holds."""

from __future__ import annotations

from dataclasses import replace

import pytest
from transformers import Qwen3Config

from benchmarks.gpu_decode import QWEN3_06B
from harness.errors import HarnessError
from harness.sft.memory import (
    DDP_BYTES_PER_PARAM,
    STATE_BYTES_PER_PARAM,
    bytes_per_token,
    fit_memory,
    head_bytes,
)
from harness.sft.settings import FAST, TUTORIAL

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
    # the sync-free head's tiles on top: 60.75 GB at 32,173 tokens (benchmarks/RESULTS.md)
    head = head_bytes(QWEN3, FAST)
    assert FAST.sync_free and 5 * GB < head < 12 * GB
    assert bytes_per_token(QWEN3, "compiled") * 32_173 + states + head > 60.75 * GB
    assert head_bytes(QWEN3, replace(FAST, sync_free=False)) == 0


def step_tokens(s) -> int:
    return s.batch_size * s.grad_accum * s.max_length


def card_for(sequences: float, processes: int = 1) -> int:
    """A card whose memory_fraction holds the training state and this many sequences."""
    state = (STATE_BYTES_PER_PARAM + (DDP_BYTES_PER_PARAM if processes > 1 else 0)) * N_PARAMS
    activations = sequences * bytes_per_token(QWEN3, "compiled") * 8192
    return int((state + head_bytes(QWEN3, FAST) + activations) / 0.85)


def test_a_big_card_keeps_the_chosen_micro_batch():
    logs: list[str] = []
    s = fit_memory(FAST, QWEN3, N_PARAMS, int(150 * GB), log=logs.append)
    assert (s.batch_size, s.grad_accum, s.activation_checkpointing) == (4, 1, False)
    assert "4 x 8192 tokens a micro-batch" in logs[0] and "85% of 150 GB" in logs[0]
    # an 80 GB H100: 4 x 8,192 tokens fit too (measured peak 60.75 GB on an H200)
    assert fit_memory(FAST, QWEN3, N_PARAMS, 85_520_809_984, log=print).batch_size == 4


def test_a_smaller_card_accumulates_the_same_step():
    logs: list[str] = []
    s = fit_memory(FAST, QWEN3, N_PARAMS, card_for(2.5), log=logs.append)
    assert (s.batch_size, s.grad_accum) == (2, 2)  # 2.5 fit: the largest divisor of 4 that does
    assert step_tokens(s) == step_tokens(FAST)
    assert "instead of 4 x 1" in logs[0]
    odd = fit_memory(replace(FAST, batch_size=5), QWEN3, N_PARAMS, card_for(4.5), log=print)
    assert (odd.batch_size, odd.grad_accum) == (1, 5)


def test_several_processes_count_the_gradient_buckets():
    total = card_for(4.1)
    assert fit_memory(FAST, QWEN3, N_PARAMS, total, processes=1, log=print).batch_size == 4
    two = fit_memory(FAST, QWEN3, N_PARAMS, total, processes=2, log=print)
    assert (two.batch_size, two.grad_accum) == (2, 2)


def test_no_room_for_one_sequence_checkpoints_activations():
    logs: list[str] = []
    s = fit_memory(FAST, QWEN3, N_PARAMS, int(20 * GB), log=logs.append)
    assert s.activation_checkpointing and step_tokens(s) == step_tokens(FAST)
    # the sync-free head's tiles go first (a speed choice), then the activations
    assert not s.sync_free and "TRL's head instead" in logs[0]
    assert "activation checkpointing on" in logs[1]


def test_no_room_for_the_model_is_an_error_before_any_work():
    with pytest.raises(HarnessError, match="596M parameters needs about 10.7 GB of state"):
        fit_memory(FAST, QWEN3, N_PARAMS, int(12 * GB), log=print)


def test_only_packed_runs_that_ask_are_resized():
    small = int(12 * GB)
    off = replace(FAST, memory_fraction=0.0)
    assert fit_memory(off, QWEN3, N_PARAMS, small, log=print) == off
    unpacked = replace(TUTORIAL, memory_fraction=0.85)
    assert fit_memory(unpacked, QWEN3, N_PARAMS, small, log=print) == unpacked
