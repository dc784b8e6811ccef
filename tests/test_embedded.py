"""The shipped embedded base model: small, loadable offline, and a believable base model."""

from __future__ import annotations

import json

import pytest

from harness.evaluation import DecodeSettings, evaluate
from harness.models import load, load_registry
from harness.suites import load_suites

from .conftest import PROJECT

BASE = PROJECT / "models/base"


def test_embedded_model_is_small_and_qwen3():
    size = sum(p.stat().st_size for p in BASE.iterdir() if p.is_file())
    assert size < 20 * 1024 * 1024
    lm = load(load_registry(PROJECT / "models.yaml")["base"], device="cpu")
    assert type(lm.model).__name__ == "Qwen3ForCausalLM"
    assert lm.chat.template_source == "tokenizer"
    assert set(lm.chat.stop_tokens) == {"<|im_end|>", "<|endoftext|>"}
    build = json.loads((BASE / "build.json").read_text())
    assert build["parameters"] == sum(p.numel() for p in lm.model.parameters())


def test_base_knows_sums_as_plain_text():
    """Pre-training taught arithmetic as text: completion of 'a + b =' works some of the time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.tiny import plain_text_accuracy

    model = AutoModelForCausalLM.from_pretrained(BASE)
    acc = plain_text_accuracy(model, AutoTokenizer.from_pretrained(BASE), n=50)
    assert acc["add"] >= 0.2 and acc["mul"] >= 0.3, acc


@pytest.fixture(scope="module")
def base_math_summary(tmp_path_factory):
    suites = load_suites("math,repetition")
    spec = load_registry(PROJECT / "models.yaml")["base"]
    out = tmp_path_factory.mktemp("base-run")
    return evaluate(
        suites, [spec], out, DecodeSettings(limit=40), log=lambda _: None, progress=False
    )["models"]["base"]


def test_base_through_the_chat_template_behaves_like_a_base_model(base_math_summary):
    """As in the tutorial: low scores on math, and it often fails to stop."""
    math = base_math_summary["math"]
    assert math["accuracy"] <= 0.15
    assert math["no_stop_rate"] >= 0.5
    assert base_math_summary["repetition"]["accuracy"] <= 0.5


def test_shipped_sft_was_trained_from_the_shipped_base():
    from harness.models import fingerprint

    info = json.loads((PROJECT / "models/sft/sft.json").read_text())
    assert info["base_fingerprint"] == fingerprint(BASE)
    assert load_registry(PROJECT / "models.yaml")["sft"].location.endswith("models/sft")


def test_shipped_sft_answers_in_turn_stops_and_beats_base(tmp_path):
    """The tutorial's question, measured: SFT teaches the format and stopping; sums improve."""
    reg = load_registry(PROJECT / "models.yaml")
    summary = evaluate(
        load_suites("math"),
        [reg["base"], reg["sft"]],
        tmp_path / "run",
        log=lambda _: None,
        progress=False,
    )["models"]
    base, sft = summary["base"]["math"], summary["sft"]["math"]
    assert sft["no_stop_rate"] <= 0.05 and base["no_stop_rate"] >= 0.5
    # the single-step sums it was trained on (the multi-step and word problems stay out of reach)
    assert sft["by_tag"]["addition"]["accuracy"] >= base["by_tag"]["addition"]["accuracy"] + 0.3
    assert sft["accuracy"] > base["accuracy"]
    assert sft["repetition_rate"] <= base["repetition_rate"]
    tags = sft["by_tag"]
    assert tags["addition"]["accuracy"] > tags["multiplication"]["accuracy"]
