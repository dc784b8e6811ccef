"""Inputs for the 1-vs-2-GPU measurement: a model folder and a large suite, built offline.

The model is Qwen3-0.6B's body (28 layers, hidden 1024, 16/8 heads, head dim 128, intermediate
3072; random bf16 weights) with the embedded model's 384-token tokenizer, so that `harness run`
and `harness sft` take it like any checkpoint and every generated id decodes. The suite has N
arithmetic questions with 100 new tokens each. Run: python benchmarks/scale_setup.py OUT_DIR
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

from benchmarks.gpu_decode import QWEN3_06B
from harness.paths import PROJECT_ROOT


def main() -> None:
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
    tok = AutoTokenizer.from_pretrained(PROJECT_ROOT / "models/base")
    shape = {**QWEN3_06B, "vocab_size": len(tok), "max_position_embeddings": 4096}
    cfg = Qwen3Config(**shape, eos_token_id=0, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=[0], pad_token_id=tok.pad_token_id)
    model.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    rng = random.Random(0)
    lines = ["name: scale", "defaults: {max_new_tokens: 100, scorer: numeric}", "questions:"]
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        lines.append(
            f"  - {{id: q{i:05d}, prompt: 'What is {a} + {b}? Show the steps.', answer: {a + b}}}"
        )
    (out / "scale.yaml").write_text("\n".join(lines) + "\n")
    print(
        f"wrote {out}/model ({sum(p.numel() for p in model.parameters())} parameters) and "
        f"{out}/scale.yaml ({n} questions)"
    )


if __name__ == "__main__":
    main()
