"""CPU decode: harness's runner at several batch sizes and both decoders, timed in one process.

Interleaved rounds on the same prompts (a suite through the chat template), so that a shared
machine's drift hits every configuration alike; reports questions/s per round and whether each
configuration's outputs equal the first's. Chose the CPU batch size (`runner.CPU_BATCH_SIZE`).
Run: python -m benchmarks.cpu_batch [--model base] [--suite math] [--eos] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from harness.chat import render
from harness.models import load, resolve_many
from harness.runner import Request, generate
from harness.suites import load_suites


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base")
    ap.add_argument("--suite", default="math")
    ap.add_argument("--new-tokens", type=int, default=64, help="without --eos: tokens per question")
    ap.add_argument("--eos", action="store_true", help="stop at end of turn, each question's limit")
    ap.add_argument("--configs", default="64:hf,128:hf,64:static,128:static")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    (spec,) = resolve_many(args.model)
    lm = load(spec, device="cpu", dtype="float32")
    if not args.eos:
        lm = dataclasses.replace(lm, chat=dataclasses.replace(lm.chat, stop_token_ids=()))
    questions = [q for s in load_suites(args.suite) for q in s.questions]
    requests = [
        Request(
            f"{i}",
            render(lm.tokenizer, q.prompt, q.system),
            q.max_new_tokens if args.eos else args.new_tokens,
        )
        for i, q in enumerate(questions)
    ]
    configs = [(int(b), d) for b, d in (c.split(":") for c in args.configs.split(","))]
    for size, decoder in configs:  # warm-up
        list(generate(lm, requests[:8], batch_size=size, decoder=decoder))
    rates: dict[str, list[float]] = {f"{b}:{d}": [] for b, d in configs}
    outputs: dict[str, dict[str, str]] = {}
    for _ in range(args.rounds):
        for size, decoder in configs:
            start = time.perf_counter()
            out = [
                g
                for batch in generate(lm, requests, batch_size=size, decoder=decoder)
                for g in batch
            ]
            rates[f"{size}:{decoder}"].append(len(requests) / (time.perf_counter() - start))
            outputs.setdefault(f"{size}:{decoder}", {g.id: g.output for g in out})
    first = outputs[f"{configs[0][0]}:{configs[0][1]}"]
    result = {
        "model": spec.name,
        "suite": args.suite,
        "questions": len(requests),
        "eos": args.eos,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "questions_per_s_by_round": {k: [round(r, 1) for r in v] for k, v in rates.items()},
        "median_questions_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "outputs_equal_the_first": {
            k: sum(o[i] == first[i] for i in first) for k, o in outputs.items()
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
