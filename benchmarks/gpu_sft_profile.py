"""Where an SFT step's time goes on a GPU: kernels vs gaps, Trainer vs a bare loop.

MFU is 6·N·tokens/s over the card's peak; a step can fall short because its kernels are slow or
because the GPU waits for the host (launches, synchronisations, Python). This profiles a few
steps of one `gpu_sft` configuration with torch.profiler and reports, per step: wall time, time
the GPU was busy (union of kernel intervals), kernel launches, host time in launch and sync
calls, and the kernels that took the most time. Two loops over the same packed batches:

- `trainer`: `SFTTrainer.train()` as `harness sft` runs it;
- `bare`: forward with TRL's fused LM head, backward, clipping, AdamW (fused), nothing else:
  what the Trainer's bookkeeping costs is the difference.

Run: python -m benchmarks.gpu_sft_profile --runs harness:long,harness-batch6:long --out DIR
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from benchmarks.cards import card, peak_flops, peak_memory_gb, sync
from benchmarks.gpu_sft import build_lm, configure, conversations, one_gpu
from harness.files import write_atomic

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaMemcpy")


def busy_us(events) -> float:
    """Union of the device kernels' intervals (µs): time the GPU had work."""
    spans = sorted(
        (e.time_range.start, e.time_range.end)
        for e in events
        if e.device_type == torch.autograd.DeviceType.CUDA
    )
    total, end = 0.0, -1.0
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def summarise(
    prof, steps: int, wall_s: float, tokens: int, n_params: int, peak: float, top_n: int = 20
) -> dict:
    events = prof.events()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    per_kernel: dict[str, list[float]] = {}
    for e in kernels:
        t = per_kernel.setdefault(e.name[:200], [0.0, 0])
        t[0] += e.time_range.end - e.time_range.start
        t[1] += 1
    host: dict[str, list[float]] = {}
    for e in events:
        if e.device_type == torch.autograd.DeviceType.CPU and e.name.startswith("cuda"):
            t = host.setdefault(e.name, [0.0, 0])
            t[0] += e.time_range.end - e.time_range.start
            t[1] += 1
    ops = []  # the PyTorch operators that launched the device time (which code to change)
    for a in prof.key_averages():
        device_us = getattr(a, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(a, "self_cuda_time_total", 0)
        if device_us and a.key.startswith("aten::"):
            ops.append(
                {"op": a.key, "ms": round(device_us / 1e3 / steps, 2), "count": a.count // steps}
            )
    ops.sort(key=lambda o: -o["ms"])
    kernel_us = sum(v[0] for v in per_kernel.values())
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[:top_n]
    tok_s = tokens / wall_s
    busy = busy_us(events)
    return {
        "steps": steps,
        "tokens_per_step": tokens // steps,
        "wall_ms_per_step": round(1e3 * wall_s / steps, 1),
        "gpu_busy_ms_per_step": round(busy / 1e3 / steps, 1),
        "kernel_ms_per_step": round(kernel_us / 1e3 / steps, 1),
        "busy_fraction": round(busy / 1e6 / wall_s, 3),
        "kernels_per_step": len(kernels) // steps,
        "tokens_per_s": round(tok_s),
        "mfu": round(6 * n_params * tok_s / peak, 4) if peak else None,
        "host_cuda_calls_per_step": {
            k: {"ms": round(v[0] / 1e3 / steps, 2), "count": v[1] // steps}
            for k, v in sorted(host.items(), key=lambda kv: -kv[1][0])[:8]
        },
        "top_ops_per_step": ops[:25],
        "top_kernels_per_step": [
            {"kernel": k, "ms": round(v[0] / 1e3 / steps, 2), "count": v[1] // steps}
            for k, v in top
        ],
    }


def profiled_trainer(trainer, steps: int, warmup: int):
    """Train `warmup` steps, then profile `steps` steps of `trainer.train()`."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    mark: dict = {}

    class Window(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:  # synchronised only where the window opens/closes
                sync()
                mark["tok0"], mark["t0"] = trainer._total_train_tokens, time.perf_counter()
                prof.__enter__()
            elif state.global_step == warmup + steps:
                sync()
                mark["tok1"], mark["t1"] = trainer._total_train_tokens, time.perf_counter()
                prof.__exit__(None, None, None)
                control.should_training_stop = True

    trainer.add_callback(Window())
    trainer.train()
    return prof, mark["t1"] - mark["t0"], mark["tok1"] - mark["tok0"]


def profiled_bare(trainer, steps: int, warmup: int):
    """The same model and batches, through the bare training step."""
    from torch.profiler import ProfilerActivity, profile

    model = trainer.model
    model.train()
    if trainer.args.use_liger_kernel:  # Trainer.train() applies them; so must this loop
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(model, trainer.args.liger_kernel_config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=torch.cuda.is_available())
    batches = iter(trainer.get_train_dataloader())

    from harness.sft.head import COLLATED

    def step() -> int:
        inputs = trainer._prepare_inputs(next(batches))
        for key in COLLATED:  # the sync-free trainer's collator adds them
            inputs.pop(key, None)
        with torch.autocast("cuda", torch.bfloat16, enabled=torch.cuda.is_available()):
            loss = model(**inputs, fused_lm_head=True, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return inputs["input_ids"].numel()

    for _ in range(warmup):
        step()
    sync()
    tokens = 0
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()  # inside: the profiler's start and stop are not the loop's
        for _ in range(steps):
            tokens += step()
        sync()
        wall = time.perf_counter() - t0
    return prof, wall, tokens


def main() -> None:
    from harness.sft.trainer import make_trainer

    os.environ.update(one_gpu(""))  # before CUDA starts: one process, one GPU

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="harness:long")
    ap.add_argument("--loops", default="trainer,bare")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="/tmp/gpu_sft_profile")
    ap.add_argument("--tiny", action="store_true", help="a tiny model: CPU smoke test")
    ap.add_argument("--trace", action="store_true", help="write a Chrome trace per run (gzip)")
    ap.add_argument("--top", type=int, default=20, help="kernels to list")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for run in args.runs.split(","):
        name, data_kind = run.split(":")
        for loop in args.loops.split(","):
            gpu = torch.cuda.is_available()
            lm = build_lm("cuda" if gpu else "cpu", tiny=args.tiny)
            n_params = lm.n_params
            settings = configure(name, lm, args.tiny)
            trainer, _ = make_trainer(
                lm, conversations(data_kind), settings, Path(f"/tmp/prof/{run}"), progress=False
            )
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            profiled = profiled_trainer if loop == "trainer" else profiled_bare
            prof, wall, tokens = profiled(trainer, args.steps, args.warmup)
            card_name = card("cuda" if gpu else "cpu")
            r = {
                "run": run,
                "loop": loop,
                "card": card_name,
                "peak_memory_gb": peak_memory_gb("cuda" if gpu else "cpu", 1) or 0,
                **summarise(
                    prof, args.steps, wall, tokens, n_params, peak_flops(card_name), args.top
                ),
            }
            results.append(r)
            if args.trace:  # the timeline: where the GPU waits, and on what
                safe = name.replace("+", "_")  # file names the device machine returns
                trace = out / f"trace-{safe}-{loop}.json"
                prof.export_chrome_trace(str(trace))
                subprocess.run(["gzip", "-f", str(trace)], check=True)
            print(json.dumps(r, indent=1), flush=True)
            write_atomic(out / "gpu_sft_profile.json", json.dumps(results, indent=1) + "\n")
            del trainer, lm, prof
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
    print(
        f"\n{'run':28} {'loop':8} {'tok/s':>8} {'MFU':>6} {'wall ms':>8} {'busy ms':>8} "
        f"{'busy':>5} {'kernels':>7} {'GB':>5}"
    )
    for r in results:
        print(
            f"{r['run']:28} {r['loop']:8} {r['tokens_per_s']:8,} {r['mfu'] or 0:6.1%} "
            f"{r['wall_ms_per_step']:8} {r['gpu_busy_ms_per_step']:8} {r['busy_fraction']:5.0%} "
            f"{r['kernels_per_step']:7} {r['peak_memory_gb']:5}"
        )


if __name__ == "__main__":
    main()
