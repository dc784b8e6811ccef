"""Decode speed on the CPU: the tutorial's one-question-at-a-time loop vs harness's batched runner.

Same model, same prompts (a suite through the chat template), same greedy decoding. End of
sequence is disabled (`--no-eos`, the default) so both sides generate exactly `--new-tokens`
tokens per question and the timing compares like with like; the token-for-token agreement of
the two is reported too. Run: python benchmarks/decode_cpu.py [--model base] [--suite math]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import torch

from harness.chat import render
from harness.files import write_atomic
from harness.models import load, resolve_many
from harness.runner import Request, generate, generate_batch
from harness.suites import load_suites


def tutorial_loop(lm, requests: list[Request]) -> tuple[list, float]:
    """The tutorial's way: tokenize one question, generate, decode, next."""
    start = time.perf_counter()
    out = [generate_batch(lm, [r])[0] for r in requests]
    return out, time.perf_counter() - start


def harness_runner(lm, requests: list[Request], batch_size: int | None) -> tuple[list, float]:
    start = time.perf_counter()
    out = [g for batch in generate(lm, requests, batch_size=batch_size) for g in batch]
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base")
    parser.add_argument("--suite", default="math")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None, help="default: auto")
    parser.add_argument("--eos", action="store_true", help="let questions stop at end of turn")
    parser.add_argument("--repeats", type=int, default=3, help="timings per side (median)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    (spec,) = resolve_many(args.model)
    lm = load(spec, device="cpu", dtype="float32")
    if not args.eos:  # no stop tokens: every question generates exactly --new-tokens tokens
        lm = dataclasses.replace(lm, chat=dataclasses.replace(lm.chat, stop_token_ids=()))
    questions = [q for s in load_suites(args.suite) for q in s.questions]
    requests = [
        Request(f"{i}", render(lm.tokenizer, q.prompt, q.system), args.new_tokens)
        for i, q in enumerate(questions)
    ]
    harness_runner(lm, requests[:8], args.batch_size)  # warm-up
    # each side timed --repeats times, interleaved, the median kept: on a shared 2-core machine
    # a single sub-second batched run moved by +-20%
    singles, batcheds = [], []
    for _ in range(args.repeats):
        singles.append(tutorial_loop(lm, requests))
        batcheds.append(harness_runner(lm, requests, args.batch_size))
    single, t_single = singles[0][0], statistics.median(t for _, t in singles)
    batched, t_batched = batcheds[0][0], statistics.median(t for _, t in batcheds)
    by_id = {g.id: g for g in batched}
    agree = sum(by_id[g.id] == g for g in single) / len(single)
    reruns_equal = all(out == single for out, _ in singles) and all(
        out == batched for out, _ in batcheds
    )
    tokens = sum(g.new_tokens for g in batched)
    result = {
        "model": spec.name,
        "suite": args.suite,
        "questions": len(requests),
        "new_tokens_per_question": args.new_tokens,
        "eos": args.eos,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "tutorial_questions_per_s": round(len(requests) / t_single, 1),
        "tutorial_tokens_per_s": round(sum(g.new_tokens for g in single) / t_single, 1),
        "harness_questions_per_s": round(len(requests) / t_batched, 1),
        "harness_tokens_per_s": round(tokens / t_batched, 1),
        "speedup": round(t_single / t_batched, 2),
        "speedups_of_each_repeat": [
            round(a / b, 2) for (_, a), (_, b) in zip(singles, batcheds, strict=True)
        ],
        "batched_equals_single": round(agree, 4),
        "reruns_identical": reruns_equal,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        write_atomic(args.json, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
