"""SFT speed on a GPU: the tutorial's SFTConfig vs harness's default, Qwen3-0.6B shape.

The model is built from Qwen3-0.6B's config with seeded random weights (a training step costs the
same with trained weights); the chat template and tokenizer are the embedded model's. Each
configuration trains through `harness.sft.trainer.make_trainer` (TRL's SFTTrainer) in its own
process for `--seconds` after a few warm-up steps, on the same conversations:

- `mix`: the project's SFT data (`data/sft/arithmetic.jsonl` + `general.jsonl` x5, ~50 tokens
  a row), what `harness sft` trains on;
- `long`: multi-turn conversations of 4 to 24 arithmetic exchanges (~150 to 1,000 tokens).

Per run: trained tokens/s (TRL's own token count, prompt tokens included), MFU by the 6·N rule
against the card's dense bf16 peak, peak GPU memory, the loss curve, and, for packed runs, the
largest difference between the logits of a packed sequence and of its rows run one by one
(packing must not let rows see each other).

Run: python -m benchmarks.gpu_sft --out benchmarks/results/gpu_sft.json
     [--runs tutorial:mix,harness:mix,...] [--seconds 30] [--tiny]   (--tiny: CPU smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from benchmarks.cards import card, peak_flops, peak_memory_gb, sync
from harness.files import write_atomic

# what RESULTS.md reports, the headline first
RUNS = [
    "harness:long",
    "harness-attn-graph-break:long",
    "harness:mix",
    "harness-attn-graph-break:mix",
    "tutorial:long",
    "tutorial:mix",
]


# configurations whose compiled layers break their graph around attention (to compare)
GRAPH_BREAK = {"harness-attn-graph-break", "harness-syncs", "harness-syncs+workers"}


def settings_for(name: str, tiny: bool):
    from harness.sft.settings import FAST, TUTORIAL

    # the tutorial leaves SFTConfig's defaults: bf16 and activation checkpointing on
    tutorial = replace(TUTORIAL, activation_checkpointing=True)
    table = {
        "tutorial": tutorial,
        # decoder layers compiled, no Liger; a step that never waits for the GPU and 2 loader
        # workers
        "harness": FAST,
        "harness-inline-loader": replace(FAST, loader_workers=0),  # collated between steps
        # TRL's loss head and Trainer's per-step checks, which wait for the GPU, batches collated
        # between steps (the step without harness/sft/syncfree.py)
        "harness-syncs": replace(FAST, sync_free=False, loader_workers=0),
        "harness-syncs+workers": replace(FAST, sync_free=False),
        # Liger's kernels at 16k-token steps ("harness+liger" in results/gpu_sft_h200*.json)
        "harness-liger-batch2": replace(FAST, compile=False, liger=True, batch_size=2),
        "harness-liger": replace(FAST, compile=False, liger=True),
        "harness-eager": replace(FAST, compile=False),  # PyTorch's own kernels, uncompiled
        "harness+fused-adamw": replace(FAST, optimizer="adamw_torch_fused"),
        "harness-batch2": replace(FAST, batch_size=2),
        "harness-batch6": replace(FAST, batch_size=6),
        "harness-batch8": replace(FAST, batch_size=8),
        # grouped-query heads repeated before the Flash kernel instead of passed as they are
        # (set below)
        "harness-repeat-kv": FAST,
        # a graph break around the attention kernel in each compiled layer (set below, as for
        # the repeat-kv row above)
        "harness-attn-graph-break": FAST,
        "harness-flex": replace(FAST, attention="flex_attention"),
        "harness-ckpt": replace(FAST, activation_checkpointing=True),
        # padded batches of whole rows, no packing: SDPA's flash path cannot take a padding mask
        "harness-nopack": replace(
            FAST, packing=False, attention="sdpa", batch_size=32, max_length=1024
        ),
    }
    # each preset's own logging interval: logging reads the loss back, as `harness sft` does
    s = replace(table[name], epochs=1000, save_steps=10**9, warmup_steps=0)
    if tiny:  # CPU smoke test: flex attention has no backward on the CPU
        flex = s.attention == "flex_attention"
        s = replace(s, max_length=min(s.max_length, 512), attention="sdpa" if flex else s.attention)
    return s


def configure(name: str, lm, tiny: bool, processes: int = 1):
    """A configuration's settings for this machine as `harness sft` adapts them (what the device
    cannot run dropped, micro-batches that fit the card), and its attention switch. Not split
    across processes nor sized to the data: the benchmark keeps each GPU's step to measure
    scaling, and trains for a fixed time."""
    from harness.sft import varlen
    from harness.sft.memory import fit_to_card
    from harness.sft.planning import for_device

    settings = for_device(settings_for(name, tiny), lm.device)
    if lm.device.startswith("cuda"):
        settings = fit_to_card(settings, lm.model.config, lm.n_params, lm.device, processes, print)
    varlen.use_native_gqa(name != "harness-repeat-kv")
    varlen.trace_attention(name not in GRAPH_BREAK)
    return settings


def conversations(kind: str, seed: int = 0):
    """The benchmark's SFT data: the shipped rows, or multi-turn chats made of them."""
    from harness.sft.data import SFTData, load_many

    mix = load_many("data/sft/arithmetic.jsonl,data/sft/general.jsonl*5")
    if kind == "mix":
        return mix
    rng = random.Random(seed)
    singles = list(load_many("data/sft/arithmetic.jsonl").conversations)
    rng.shuffle(singles)
    convs, i = [], 0
    while i < len(singles):
        k = rng.randint(4, 24)
        convs.append(tuple(turn for conv in singles[i : i + k] for turn in conv))
        i += k
    convs = convs * 4  # enough tokens for the long runs
    return SFTData("long", "messages", tuple(convs), tuple(f"long:{j}" for j in range(len(convs))))


def build_lm(device: str, tiny: bool, seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from benchmarks.gpu_decode import QWEN3_06B, TINY
    from harness.models import load, load_registry, resolve

    small = load(resolve("base", load_registry()), device="cpu", dtype="float32")
    torch.manual_seed(seed)
    config = Qwen3Config(**(TINY if tiny else QWEN3_06B))
    with torch.device(device):  # float32 weights; bf16 autocast while training
        model = Qwen3ForCausalLM(config)
    model.generation_config.pad_token_id = small.tokenizer.pad_token_id
    return replace(small, model=model, device=device, fingerprint="random-qwen3-0.6b-shape")


def packing_leak(trainer, device: str) -> float:
    """Largest |logit| difference between a packed sequence and its rows run one at a time."""
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids = batch["input_ids"].to(device)
    pos = batch["position_ids"].to(device)
    model = trainer.model
    model.eval()
    half = torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda")  # as in training
    with torch.no_grad(), half:
        packed = model(input_ids=ids, position_ids=pos).logits[0]
        starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
        worst = 0.0
        for a, b in list(zip(starts, starts[1:], strict=False))[:8]:
            alone = model(input_ids=ids[:, a:b]).logits[0]
            worst = max(worst, (alone - packed[a:b]).abs().max().item())
    model.train()
    return worst


def note(begun: float, what: str) -> None:
    print(f"[{time.perf_counter() - begun:6.1f} s] {what}", file=sys.stderr, flush=True)


def graph_breaks(counter: dict[str, int]) -> dict[str, int]:
    """torch.compile's graph breaks while training, summed by the first line of their reason."""
    out: dict[str, int] = {}
    for reason, n in counter.items():
        key = reason.splitlines()[0][:100]
        out[key] = out.get(key, 0) + n
    return out


def attention_flops_per_token(config, trainer) -> float:
    """Causal attention's matrix products (QK^T and PV, forward and backward), which the 6·N rule
    leaves out: 6·layers·heads·head_dim·n(n+1) for a row of n tokens, averaged over the tokens of
    the training rows (PaLM's MFU counts them, for non-causal attention)."""
    if "seq_lengths" in trainer.train_dataset.column_names:
        rows = [n for pack in trainer.train_dataset["seq_lengths"] for n in pack]
    else:
        rows = [len(x) for x in trainer.train_dataset["input_ids"]]
    from harness.models import attention_shape

    shape = attention_shape(config)
    width = config.get_text_config().num_hidden_layers * shape.heads * shape.head_dim
    return 6 * width * sum(n * (n + 1) for n in rows) / max(sum(rows), 1)


def one(name: str, data_kind: str, seconds: float, warmup: int, tiny: bool) -> dict:
    """Train one configuration until `seconds` after `warmup` optimizer steps; measure."""
    from transformers import TrainerCallback

    begun = time.perf_counter()
    from harness.env import versions
    from harness.sft import varlen
    from harness.sft.trainer import make_trainer

    device, gpus = "cpu", int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():  # under torchrun: one GPU per process, DDP through Trainer
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    lm = build_lm(device, tiny)
    n_params = lm.n_params
    settings = configure(name, lm, tiny, gpus)
    data = conversations(data_kind)
    out = Path(f"/tmp/gpu_sft/{name}-{data_kind}")
    note(begun, "model built")
    trainer, route = make_trainer(lm, data, settings, out, progress=False, log=print)
    note(begun, f"trainer ready: {len(trainer.train_dataset)} training rows")
    leak = packing_leak(trainer, device.split(":")[0]) if settings.packing else None
    note(begun, f"packing check: {leak}")

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = self.tok0 = None
            self.steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            # synchronised only where the window opens and closes: a sync every step would
            # idle the GPU while the host starts the next step, which `harness sft` does not do
            if state.global_step <= warmup + 2:
                note(begun, f"step {state.global_step}: {trainer._total_train_tokens} tokens")
            if state.global_step == warmup:
                sync(device)
                self.t0, self.tok0 = time.perf_counter(), trainer._total_train_tokens
                self.step0 = state.global_step
                if device != "cpu":
                    torch.cuda.reset_peak_memory_stats()
            elif self.t0 is not None and time.perf_counter() - self.t0 >= seconds:
                sync(device)
                self.t1, self.tok1 = time.perf_counter(), trainer._total_train_tokens
                self.steps = state.global_step - self.step0
                control.should_training_stop = True

    clock = Clock()
    trainer.add_callback(clock)
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.utils.counters.clear()  # graph breaks of training only (not the leak check)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    if not clock.steps:
        raise SystemExit(f"{name}: the data ran out before {seconds} s of timed steps")
    # TRL counts the padding that gives flex attention one shape per step: leave it out
    fill = 1.0
    if trainer.padding_free and trainer.args.pad_to_multiple_of:
        rows = [sum(x) for x in trainer.train_dataset["seq_lengths"]]
        fill = sum(rows) / len(rows) / settings.max_length
    tok_s = fill * (clock.tok1 - clock.tok0) / (clock.t1 - clock.t0)
    card_name = card(device)
    peak = peak_flops(card_name)
    attn = attention_flops_per_token(lm.model.config, trainer)
    breaks = torch._dynamo.utils.counters["graph_break"]
    curve = [
        {"step": h["step"], "loss": round(h["loss"], 4), "tokens": int(h.get("num_tokens", 0))}
        for h in trainer.state.log_history
        if "loss" in h
    ]
    return {
        "run": name,
        "data": data_kind,
        "card": card_name,
        "params": n_params,
        "route": route,
        "gqa_heads": "native" if varlen.native_gqa() else "repeated",
        "settings": asdict(settings),
        "tokens_per_step": round(fill * (clock.tok1 - clock.tok0) / clock.steps),
        "packed_fill": round(fill, 4),
        "timed_steps": clock.steps,
        "timed_seconds": round(clock.t1 - clock.t0, 2),
        "tokens_per_s": round(tok_s, 1),
        "gpus": gpus,
        "mfu": round(6 * n_params * tok_s / (peak * gpus), 4) if peak else None,
        "attention_flops_per_token": round(attn),
        "mfu_with_attention": round((6 * n_params + attn) * tok_s / (peak * gpus), 4)
        if peak
        else None,
        "graph_breaks": graph_breaks(breaks),
        "peak_memory_gb": peak_memory_gb(device),
        "wall_s_including_warmup": round(wall, 1),
        "packing_max_logit_diff": leak,
        "loss_curve": curve,
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d"),
    }


def one_gpu(gpus: str) -> dict[str, str]:
    """A run without torchrun sees one GPU: Trainer would spread a lone process over all it sees
    (nn.DataParallel), which TRL refuses."""
    if gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=",".join(RUNS), help="config:data pairs")
    ap.add_argument("--seconds", type=float, default=30.0, help="timed seconds per run")
    ap.add_argument("--warmup", type=int, default=3, help="optimizer steps before timing")
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds per run, all in")
    ap.add_argument("--budget", type=float, default=1e9, help="start no run after these seconds")
    ap.add_argument("--tiny", action="store_true", help="a tiny model: CPU smoke test")
    ap.add_argument("--out", default="benchmarks/results/gpu_sft.json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        name, data_kind = args.one.split(":")
        result = one(name, data_kind, args.seconds, args.warmup, args.tiny)
        if os.environ.get("RANK", "0") == "0":
            print("RESULT " + json.dumps(result))
        return
    results, begun = [], time.perf_counter()
    for run in args.runs.split(","):
        if time.perf_counter() - begun > args.budget:
            print(f"{run}: not started (--budget {args.budget} s spent)", flush=True)
            continue
        spec, _, gpus = run.partition("@")  # config:data@2 runs on 2 GPUs under torchrun
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
        cmd = [
            sys.executable,
            *(launch if gpus else []),
            "-m",
            "benchmarks.gpu_sft",
            "--one",
            spec,
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
        ] + (["--tiny"] if args.tiny else [])
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=args.timeout,
                env={**os.environ, "TOKENIZERS_PARALLELISM": "false", **one_gpu(gpus)},
            )
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            notes = "\n".join(ln for ln in err.splitlines() if ln.startswith("["))[-1500:]
            results.append({"run": run, "error": f"timed out after {args.timeout} s", "log": notes})
            print(f"{run}: timed out after {args.timeout} s\n{notes}", flush=True)
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            tail = (proc.stderr or proc.stdout)[-1500:]
            results.append({"run": run, "error": tail})
            print(f"{run}: failed\n{tail}", flush=True)
            continue
        r = {**json.loads(lines[-1][7:]), "run": run}
        results.append(r)
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        print(
            f"{run}: {r['tokens_per_s']:,.0f} tokens/s, MFU {mfu}, peak {r['peak_memory_gb']} GB, "
            f"{r['tokens_per_step']} tokens/step, leak {r['packing_max_logit_diff']}, "
            f"with attention {r['mfu_with_attention']}, graph breaks {r['graph_breaks']}",
            flush=True,
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
