"""Tiny real models, built in seconds, for tests that must run real tokenizers and decoding."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # Triton kernels run in its interpreter (set before they load)
    os.environ.setdefault("TRITON_INTERPRET", "1")

from harness.cli import main
from harness.sft import varlen
from harness.sft.settings import EMBEDDED
from harness.tiny import IM_END, build_model, build_tokenizer, pretrain, synthetic_corpus

PROJECT = Path(__file__).resolve().parent.parent
# packed, padding-free SFT on the CPU (the CUDA default's layout, the embedded model's pace)
PACKED = replace(EMBEDDED, packing=True, attention=varlen.ATTENTION, max_length=256, batch_size=2)


def _save(model, tokenizer, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    torch.set_num_threads(2)
    return build_tokenizer(synthetic_corpus(400, seed=1))


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """An untrained Qwen3 of the embedded shape: random but deterministic outputs."""
    model = build_model(tiny_tokenizer, seed=3)
    return _save(model, tiny_tokenizer, tmp_path_factory.mktemp("random-model"))


def _chat_docs(n: int, seed: int) -> list[str]:
    """Chat-formatted short answers, so the model learns to end its turn with <|im_end|>."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        docs.append(
            f"<|im_start|>user\nWhat is {a} + {b}?{IM_END}\n<|im_start|>assistant\n"
            f"<think>\n\n</think>\n\n{a + b}{IM_END}\n"
        )
    return docs


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny model trained for a few seconds to answer in the chat format and stop."""
    model = build_model(tiny_tokenizer, seed=4)
    pretrain(
        model,
        tiny_tokenizer,
        _chat_docs(600, 5),
        steps=80,
        batch=16,
        seq_len=64,
        lr=5e-3,
        seed=4,
        log=lambda _: None,
    )
    return _save(model, tiny_tokenizer, tmp_path_factory.mktemp("chat-model"))


@pytest.fixture
def write(tmp_path):
    """Write a text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write


def run_cli(*args: str) -> int:
    """Run the harness command in-process and return its exit code."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


def sft_args(
    model: object, data: object, out: object, *, config: object = None, name: str | None = None
) -> list[str]:
    """`harness sft` arguments as the tests use them: quiet, unregistered unless named."""
    args = ["sft", "--model", str(model), "--data", str(data), "--out", str(out), "--quiet"]
    args += ["--name", name] if name else ["--no-register"]
    return args + (["--config", str(config)] if config else [])


def run_args(suite: object, models: object, out: object, *extra: str) -> list[str]:
    """`harness run` arguments as the tests use them: quiet, into `out`."""
    args = ["run", "--suite", str(suite), "--models", str(models), "--out", str(out), "--quiet"]
    return args + list(extra)


def chat_rows(n: int) -> list[dict]:
    """`n` tiny chat rows ("What is a + 1?" -> "a + 1 = a+1") for SFT tests."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {a} + 1?"},
                {"role": "assistant", "content": f"{a} + 1 = {a + 1}"},
            ]
        }
        for a in range(n)
    ]


def jsonl(rows: list[dict]) -> str:
    import json

    return "".join(json.dumps(r) + "\n" for r in rows)
