"""Where the static decoder's step time goes on a GPU (Qwen3-0.6B shape), and whether the CUDA
graph replays the eager step exactly (checked in float32, where near-ties of random bf16 weights
cannot hide a bug). Run: python benchmarks/gpu_decode_profile.py"""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import Qwen3Config, Qwen3ForCausalLM

from benchmarks.gpu_decode import QWEN3_06B, left_pad, prompts
from harness.fastdecode import greedy_static


def main() -> None:
    cfg = Qwen3Config(**QWEN3_06B)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(cfg).eval()
    ids, mask = left_pad(prompts(64, cfg.vocab_size, seed=3), "cuda")
    eager, _ = greedy_static(model, ids, mask, 40, [], cuda_graph=False)
    graph, _ = greedy_static(model, ids, mask, 40, [], cuda_graph=True)
    same = (eager == graph).all(-1)
    print(
        {
            "float32_graph_equals_eager": f"{int(same.sum())}/{len(same)}",
            "attn_implementation": model.config._attn_implementation,
        }
    )
    model = model.to(torch.bfloat16)
    ids, mask = left_pad(prompts(1024, cfg.vocab_size, seed=2), "cuda")
    greedy_static(model, ids, mask, 8, [], cuda_graph=False)  # warm-up
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        greedy_static(model, ids, mask, 8, [], cuda_graph=False)
        torch.cuda.synchronize()
    print(
        prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60)
    )


if __name__ == "__main__":
    main()
