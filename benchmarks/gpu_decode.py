"""Decode speed on a GPU for the Qwen3-0.6B shape (random bf16 weights, built from its config).

Compares, on the same random prompts of 32-40 tokens with 100 new tokens each and end of
sequence disabled: the tutorial's one-question-at-a-time `generate` loop, batched `generate`
(harness's decoder before the static path), and harness's default on CUDA, the static-cache
decoder with the step replayed as a CUDA graph. Also measures the card's copy bandwidth, the
memory-bandwidth limit of each batch, and how many bf16 outputs agree with the one-at-a-time loop.
Run: python benchmarks/gpu_decode.py [--out results.json] [--tiny]   (--tiny: a CPU smoke test)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

from harness.fastdecode import greedy_static

QWEN3_06B = dict(
    vocab_size=151936,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
    max_position_embeddings=40960,
    rope_theta=1_000_000.0,
)
TINY = dict(
    vocab_size=384,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    tie_word_embeddings=True,
    max_position_embeddings=512,
)
NEW = 100
PAD = 0


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def prompts(n: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(32, 41, (n,), generator=g)
    return [torch.randint(10, vocab, (int(k),), generator=g).tolist() for k in lengths]


def left_pad(batch: list[list[int]], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, batch))
    ids = torch.full((len(batch), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, p in enumerate(batch):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def hf_generate(model, batch, device):
    ids, mask = left_pad(batch, device)
    config = GenerationConfig(
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        do_sample=False,
        num_beams=1,
        eos_token_id=None,
        pad_token_id=PAD,
    )
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    return out[:, ids.shape[1] :]


def static_generate(model, batch, device):
    ids, mask = left_pad(batch, device)
    return greedy_static(model, ids, mask, NEW, [])


def timed(fn, *args):
    device = args[-1]
    sync(device)
    start = time.perf_counter()
    out = fn(*args)
    sync(device)
    return out, time.perf_counter() - start


def copy_bandwidth(device: str) -> float:
    """Bytes read plus written per second by a large device-to-device copy (median of 10)."""
    n = (2 << 30) if device == "cuda" else (64 << 20)
    src = torch.empty(n, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    times = []
    for _ in range(12):
        sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n / sorted(times[2:])[len(times[2:]) // 2]


def bandwidth_limit(cfg: Qwen3Config, params: int, batch: int, prompt: float, bw: float) -> float:
    """Tokens/s if each step only read the weights and the KV cache once (bf16)."""
    kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2
    mean_context = prompt + NEW / 2
    step_bytes = params * 2 + batch * mean_context * kv_per_token
    return batch / (step_bytes / bw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--tiny", action="store_true", help="tiny shape on the CPU (smoke test)")
    parser.add_argument("--loop-prompts", type=int, default=12)
    parser.add_argument("--sizes", default="126,256,1024")
    args = parser.parse_args()
    device = "cpu" if args.tiny else "cuda"
    cfg = Qwen3Config(**(TINY if args.tiny else QWEN3_06B))
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(cfg)
    model = model.to(torch.float32 if args.tiny else torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters())
    bw = copy_bandwidth(device)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "parameters": params,
        "copy_bandwidth_GBps": round(bw / 1e9, 1),
        "new_tokens": NEW,
        "runs": [],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)

    loop = prompts(args.loop_prompts, cfg.vocab_size, seed=1)
    hf_generate(model, loop[:1], device)  # warm-up
    singles, t_loop = timed(lambda b, d: [hf_generate(model, [p], d)[0] for p in b], loop, device)
    result["runs"].append(
        {
            "method": "tutorial loop (generate, one at a time)",
            "prompts": len(loop),
            "seconds": round(t_loop, 2),
            "tokens_per_s": round(len(loop) * NEW / t_loop, 1),
            "questions_per_s": round(len(loop) / t_loop, 2),
        }
    )
    print(result["runs"][-1], flush=True)
    static_loop = static_generate(model, loop, device)
    agree = sum(bool((static_loop[i] == s).all()) for i, s in enumerate(singles))
    result["bf16_agreement_static_batch_vs_loop" if not args.tiny else "agreement"] = (
        f"{agree}/{len(loop)}"
    )
    print({"agreement": f"{agree}/{len(loop)}"}, flush=True)
    if device == "cuda":  # the graph replays exactly what the eager step computes
        ids, mask = left_pad(loop, device)
        eager = greedy_static(model, ids, mask, NEW, [], cuda_graph=False)
        result["graph_equals_eager"] = bool((eager == static_loop).all())
        print({"graph_equals_eager": result["graph_equals_eager"]}, flush=True)

    for n in [int(x) for x in args.sizes.split(",")]:
        batch = prompts(n, cfg.vocab_size, seed=2)
        mean_prompt = sum(map(len, batch)) / n
        limit = bandwidth_limit(cfg, params, n, mean_prompt, bw)
        for method, fn in (
            ("generate, batched", hf_generate),
            ("harness static cache + CUDA graph", static_generate),
        ):
            if method.startswith("generate") and n == 126:
                continue
            fn(model, batch[: min(n, 64)], device)  # warm-up (kernels, allocator)
            torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
            _, seconds = timed(fn, model, batch, device)
            tps = n * NEW / seconds
            row = {
                "method": method,
                "prompts": n,
                "seconds": round(seconds, 3),
                "tokens_per_s": round(tps, 1),
                "questions_per_s": round(n / seconds, 1),
                "speedup_vs_loop": round(tps / (len(loop) * NEW / t_loop), 1),
                "bandwidth_limit_tokens_per_s": round(limit, 1),
                "fraction_of_limit": round(tps / limit, 3),
            }
            if device == "cuda":
                row["peak_memory_GB"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
            result["runs"].append(row)
            print(row, flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
