"""Does harness's fast SFT default learn what the tutorial's config learns, per token seen?

Speed settings (packing, bf16, compiled or Liger kernels) must not change the result of a step; the
batch size does change it, so this trains a *pretrained* model (the embedded base: random weights
say little about fine-tuning) on the same rows with the tutorial's settings (batch 1 x accumulation
8, learning rate 8e-5) and with harness's CUDA default's optimisation settings (packed steps of up
to 32k tokens, at least 200 of them, learning rate 8e-5 x rows per step / 8 up to 6.4e-4, linear;
and, to show why, the same with 16k-token steps whatever the data size), and measures the loss on
held-out conversations (assistant tokens only) as training goes.

Run: python -m benchmarks.sft_loss_cpu [--data mix|long] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from transformers import TrainerCallback

from benchmarks.gpu_sft import conversations
from harness.files import write_atomic
from harness.models import load, load_registry, resolve
from harness.sft.data import SFTData
from harness.sft.planning import plan_steps, row_lengths
from harness.sft.settings import FAST, TUTORIAL
from harness.sft.trainer import make_trainer


def split(data: SFTData, held_out: int, seed: int = 0) -> tuple[SFTData, SFTData]:
    test = data.sample(held_out, seed)
    keep = set(test.rows)
    idx = [i for i, r in enumerate(data.rows) if r not in keep]
    train = SFTData(
        data.source,
        data.format,
        tuple(data.conversations[i] for i in idx),
        tuple(data.rows[i] for i in idx),
    )
    return train, test


def held_out_loss(model, tokenizer, test: SFTData) -> float:
    """Mean loss per assistant token over the held-out conversations."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(len(test)):
            enc = tokenizer.apply_chat_template(
                test.messages(i),
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
            )
            ids = torch.tensor([enc["input_ids"]])
            mask = torch.tensor(enc["assistant_masks"], dtype=torch.bool)
            labels = torch.where(mask, ids[0], -100)[None]
            logits = model(input_ids=ids).logits[0, :-1].float()
            target = labels[0, 1:]
            keep = target != -100
            total += torch.nn.functional.cross_entropy(
                logits[keep], target[keep], reduction="sum"
            ).item()
            count += int(keep.sum())
    model.train()
    return total / count


def train_one(name: str, settings, train: SFTData, test: SFTData, points: int) -> dict:
    lm = load(resolve("base", load_registry()), device="cpu", dtype="float32")
    settings = plan_steps(settings, row_lengths(train, lm.tokenizer))  # as `harness sft` does
    trainer, _ = make_trainer(lm, train, settings, Path(f"/tmp/sft_loss/{name}"), progress=False)
    curve = [{"tokens": 0, "held_out_loss": round(held_out_loss(lm.model, lm.tokenizer, test), 4)}]

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.every = max(1, state.max_steps // points)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % self.every == 0 or state.global_step == state.max_steps:
                loss = held_out_loss(trainer.model, lm.tokenizer, test)
                curve.append(
                    {"tokens": trainer._total_train_tokens, "held_out_loss": round(loss, 4)}
                )

    trainer.add_callback(Probe())
    start = time.perf_counter()
    trainer.train()
    return {
        "config": name,
        "settings": asdict(settings),
        "steps": trainer.state.global_step,
        "tokens": trainer._total_train_tokens,
        "seconds": round(time.perf_counter() - start, 1),
        "curve": curve,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mix", choices=["mix", "long"])
    ap.add_argument("--held-out", type=int, default=300)
    ap.add_argument("--points", type=int, default=10, help="held-out evaluations per run")
    ap.add_argument("--out", default="benchmarks/results/sft_loss_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = conversations(args.data)
    if args.data == "long":  # one copy of each conversation, not the speed runs' four
        data = SFTData(
            data.source,
            data.format,
            data.conversations[: len(data) // 4],
            data.rows[: len(data) // 4],
        )
    train, test = split(data, args.held_out)
    quiet = {"logging_steps": 10**6, "save_steps": 10**9}
    # the optimisation settings of the CUDA default; its kernels (compiled layers) compute the
    # same step and would only spend CPU time compiling
    fast = replace(FAST, liger=False, compile=False, **quiet)
    configs = {
        "tutorial": replace(TUTORIAL, **quiet),
        "harness": fast,  # steps sized to the data (min_steps), learning rate scaled
        # always 2 x 8,192-token steps, however few rows the data has (min_steps off), lr capped
        "harness-16k": replace(fast, min_steps=0, batch_size=2),
    }
    results = []
    for name, settings in configs.items():
        r = train_one(name, settings, train, test, args.points)
        results.append({**r, "data": args.data, "train_rows": len(train), "test_rows": len(test)})
        print(
            f"{name}: {r['steps']} steps, {r['tokens']} tokens, {r['seconds']} s, held-out loss "
            + " ".join(f"{p['tokens']}:{p['held_out_loss']}" for p in r["curve"]),
            flush=True,
        )
        write_atomic(args.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
