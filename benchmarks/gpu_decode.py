"""Decode speed and batch invariance on a GPU for the Qwen3-0.6B shape (random bf16 weights).

On the same random prompts of 32-40 tokens with 100 new tokens each and end of sequence disabled:
the tutorial's one-question-at-a-time `generate` loop, the static-cache decoder with the step
replayed as a CUDA graph (the CUDA default before the invariant kernels; its outputs depend on
the batch), and harness's default on CUDA, the batch-invariant kernels. Each size is timed
`--repeats` times, the methods interleaved, and the medians kept; reruns are compared output for
output. Then the invariant decoder's outputs at batch 1, 7 and 64 are compared with the whole
batch, and the margins where the two decoders part are summarised. Random weights are the
harshest case: their logits are near-ties everywhere.
Run: python benchmarks/gpu_decode.py [--out results.json] [--tiny]   (--tiny: a CPU smoke test)
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

from harness.fastdecode import greedy_static
from harness.files import write_atomic

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


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


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
    return greedy_static(model, ids, mask, NEW, [])[0]


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


def invariant_decoder(model):
    from harness.invariant import InvariantDecoder

    return InvariantDecoder(model)


def invariant_generate(model, batch, device, decoder=None):
    return (decoder or invariant_decoder(model)).generate(batch, NEW, []).tokens


def in_batches(fn, model, batch, size, device):
    """fn over `batch` cut into batches of `size`, rows in the original order."""
    return torch.cat([fn(model, batch[i : i + size], device) for i in range(0, len(batch), size)])


def identical(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{int((a == b).all(-1).sum())}/{len(a)}"


def divergence_margins(model, batch, static: torch.Tensor) -> dict:
    """Where the batch-dependent path and the invariant one part: the invariant path's margin
    (best minus second-best logit) at the first token that differs. How close to a tie an
    output must be for a different kernel to flip it: what the report's 'fragile' means."""
    out = invariant_decoder(model).generate(batch, NEW, [])
    differ = (out.tokens != static).any(-1)
    first = (out.tokens != static).float().argmax(-1)
    at = out.margins.gather(1, first[:, None])[:, 0][differ].sort().values
    overall = out.margins.amin(-1)
    if not len(at):
        return {"rows_that_differ": 0}
    q = lambda t, f: round(float(t[min(len(t) - 1, int(f * len(t)))]), 4)  # noqa: E731
    return {
        "rows_that_differ": f"{int(differ.sum())}/{len(batch)}",
        "margin_at_divergence": {"median": q(at, 0.5), "p90": q(at, 0.9), "max": q(at, 1.0)},
        "min_margin_all_rows": {"median": q(overall.sort().values, 0.5)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--tiny", action="store_true", help="tiny shape on the CPU (smoke test)")
    parser.add_argument("--loop-prompts", type=int, default=8)
    parser.add_argument("--sizes", default="126,256,1024")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method and size")
    parser.add_argument("--with-generate", action="store_true", help="also time batched generate")
    parser.add_argument("--skip-invariance", action="store_true")
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
        "triton": triton_version(),
        "parameters": params,
        "copy_bandwidth_GBps": round(bw / 1e9, 1),
        "new_tokens": NEW,
        "runs": [],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)

    loop = prompts(args.loop_prompts, cfg.vocab_size, seed=1)
    hf_generate(model, loop[:1], device)  # warm-up
    singles, t_loop = timed(lambda b, d: [hf_generate(model, [p], d)[0] for p in b], loop, device)
    loop_tps = len(loop) * NEW / t_loop
    result["runs"].append(
        {
            "method": "tutorial loop (generate, one at a time)",
            "prompts": len(loop),
            "seconds": round(t_loop, 2),
            "tokens_per_s": round(loop_tps, 1),
        }
    )
    print(result["runs"][-1], flush=True)

    methods = [
        ("static cache + CUDA graph (before: batch-dependent)", static_generate),
        ("invariant kernels + CUDA graph (default)", invariant_generate),
    ]
    if args.with_generate:
        methods.insert(0, ("generate, batched", hf_generate))
    outputs: dict[tuple[str, int], torch.Tensor] = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        batch = prompts(n, cfg.vocab_size, seed=2)
        limit = bandwidth_limit(cfg, params, n, sum(map(len, batch)) / n, bw)
        times: dict[str, list[float]] = {m: [] for m, _ in methods}
        runs: dict[str, list[torch.Tensor]] = {m: [] for m, _ in methods}
        for _, fn in methods:
            fn(model, batch[: min(n, 64)], device)  # warm-up (compilation, allocator)
        torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
        for _ in range(args.repeats):  # interleaved, so drift in the card hits both alike
            for method, fn in methods:
                out, seconds = timed(fn, model, batch, device)
                times[method].append(seconds)
                runs[method].append(out)
        for method, _ in methods:
            seconds = sorted(times[method])[len(times[method]) // 2]
            tps = n * NEW / seconds
            outputs[(method, n)] = runs[method][0]
            row = {
                "method": method,
                "prompts": n,
                "seconds_median": round(seconds, 3),
                "seconds_all": [round(t, 3) for t in times[method]],
                "tokens_per_s": round(tps, 1),
                "speedup_vs_loop": round(tps / loop_tps, 1),
                "fraction_of_bandwidth_limit": round(tps / limit, 3),
                "reruns_identical": [identical(r, runs[method][0]) for r in runs[method][1:]],
            }
            if device == "cuda":
                row["peak_memory_GB_all_methods"] = round(
                    torch.cuda.max_memory_allocated() / 1e9, 2
                )
            result["runs"].append(row)
            print(row, flush=True)
        fast = [r for r in result["runs"][-len(methods) :] if r["method"] in dict(methods)]
        ratio = fast[-1]["tokens_per_s"] / fast[-2]["tokens_per_s"]
        result.setdefault("invariant_vs_static", {})[n] = round(ratio, 3)
        print({"prompts": n, "invariant / static tokens/s": round(ratio, 3)}, flush=True)

    if not args.skip_invariance:
        n = max(int(x) for x in args.sizes.split(","))
        batch = prompts(n, cfg.vocab_size, seed=2)
        check: dict[str, dict[str, str]] = {}
        for method, fn in methods[-2:]:
            whole = outputs[(method, n)]
            check[method] = {
                f"batch {size} vs {n}": identical(
                    in_batches(fn, model, batch[:count], size, device), whole[:count]
                )
                for size, count in ((1, 32), (7, n), (64, n))
            }
            print({method: check[method]}, flush=True)
        result["batch_invariance"] = check
        static_out = outputs[(methods[-2][0], n)]
        result["divergence"] = divergence_margins(model, batch, static_out)
        print({"divergence": result["divergence"]}, flush=True)
    if args.out:
        write_atomic(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
