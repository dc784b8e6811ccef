from __future__ import annotations

import dataclasses

import pytest

from harness.chat import render
from harness.models import ModelSpec, load
from harness.runner import (
    CPU_BATCH_SIZE,
    CPU_KV_BUDGET,
    Request,
    _finish,
    auto_batch_size,
    generate,
    generate_batch,
    plan_batches,
    sequence_bytes,
)

PROMPTS = [
    "Calculate 1+1-1",
    "What is 23 * 47?",
    "Hi",
    "What's the difference between thread and process? Explain it in detail please.",
    "Count from 1 to 5.",
    "12 + 7 = ?",
    "Give me an 1-sentence introduction of LLM.",
    "a",
    "Name three animals that live in the sea and say why.",
    "What is 5+5? Then what is 5+5 again?",
    "Subtract 17 from 93.",
    "ok",
]


@pytest.fixture(scope="module")
def random_lm(random_model_dir):
    return load(ModelSpec("random", "path", str(random_model_dir)), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def chat_lm(chat_model_dir):
    return load(ModelSpec("chat", "path", str(chat_model_dir)), device="cpu", dtype="float32")


def without_margins(gens: dict) -> dict:
    """Generations with min_margin dropped: CPU logits move in the last bits between decoders
    and batch shapes while every chosen token stays the same."""
    return {k: dataclasses.replace(g, min_margin=None) for k, g in gens.items()}


def assert_close_margins(a: dict, b: dict) -> None:
    for k, g in a.items():
        assert g.min_margin == pytest.approx(b[k].min_margin, abs=1e-4), k


def requests_for(lm, prompts, max_new=24):
    return [Request(str(i), render(lm.tokenizer, p), max_new) for i, p in enumerate(prompts)]


def test_plan_batches_is_length_sorted_and_stable():
    assert plan_batches([3, 5, 3, 9, 1], 2) == [[3, 1], [0, 2], [4]]
    assert plan_batches([2, 2, 2], 8) == [[0, 1, 2]]


def test_cpu_batches_are_large_within_a_fixed_kv_budget(random_lm):
    """A whole 126-question suite in one batch where the KV cache is small; halved for big
    models or long outputs, the same on every machine."""
    assert auto_batch_size(random_lm, 200) == CPU_BATCH_SIZE == 128
    per_token = sequence_bytes(random_lm, 2) - sequence_bytes(random_lm, 1)
    longest = CPU_KV_BUDGET // (per_token * 40)  # 40 such sequences fill the budget
    size = auto_batch_size(random_lm, longest)
    assert size == 32 and size * sequence_bytes(random_lm, longest) <= CPU_KV_BUDGET
    assert auto_batch_size(random_lm, CPU_KV_BUDGET) == 1  # never less than one


def test_batched_equals_one_at_a_time_on_cpu_float32(random_lm):
    reqs = requests_for(random_lm, PROMPTS)
    singles = {r.id: generate_batch(random_lm, [r])[0] for r in reqs}
    batched = {g.id: g for batch in generate(random_lm, reqs, batch_size=5) for g in batch}
    assert batched.keys() == singles.keys()
    for rid, single in singles.items():
        got = batched[rid]
        # the tokens are the same; CPU logits move in the last bits with the batch shape (this
        # path is exact in its choices, not by construction: harness/invariant is)
        assert dataclasses.replace(got, min_margin=None) == dataclasses.replace(
            single, min_margin=None
        ), (PROMPTS[int(rid)], got, single)
        assert got.min_margin == pytest.approx(single.min_margin, abs=1e-4)
    # a random model does not stop: every row ran to its limit
    assert {g.finish_reason for g in batched.values()} <= {"length", "eos"}


def test_reruns_are_identical(random_lm):
    reqs = requests_for(random_lm, PROMPTS[:6])
    first = [g for b in generate(random_lm, reqs, batch_size=4) for g in b]
    second = [g for b in generate(random_lm, reqs, batch_size=4) for g in b]
    assert first == second


def test_trained_model_stops_on_its_turn_end(chat_lm):
    reqs = requests_for(chat_lm, ["What is 3 + 4?", "What is 2 + 2?", "What is 9 + 0?"], 16)
    gens = [g for b in generate(chat_lm, reqs, batch_size=3) for g in b]
    for g in gens:
        assert g.finish_reason == "eos", g
        assert g.new_tokens <= 4 and "<|im_end|>" not in g.output
    assert all(g.output.strip().isdigit() for g in gens)  # an answer, then the turn end


def test_per_question_limits_and_length_finish(random_lm):
    prompt = render(random_lm.tokenizer, "Tell me a story")
    reqs = [Request("short", prompt, 3), Request("long", prompt, 10), Request("x", "hi", 10)]
    gens = {g.id: g for b in generate(random_lm, reqs, batch_size=3) for g in b}
    short, long = gens["short"], gens["long"]
    assert (short.finish_reason, short.new_tokens) == ("length", 3)
    assert (long.finish_reason, long.new_tokens) == ("length", 10)
    assert long.output.startswith(short.output) and len(long.output) > len(short.output)


def test_stop_strings_cut_the_output(random_lm):
    lm = dataclasses.replace(
        random_lm, chat=dataclasses.replace(random_lm.chat, stop_strings=("\nUser:",))
    )
    ids = lm.tokenizer("7\nUser: and more", add_special_tokens=False)["input_ids"]
    g = _finish(lm, Request("x", "p", 64), ids, 5)
    assert g.output == "7" and g.finish_reason == "stop"


def test_skip_and_prompt_too_long(random_lm):
    reqs = requests_for(random_lm, ["hi", "word " * 600, "yo"], 4)
    out = [g for b in generate(random_lm, reqs, batch_size=8, skip={"0"}) for g in b]
    by_id = {g.id: g for g in out}
    assert set(by_id) == {"1", "2"}
    assert by_id["1"].finish_reason == "error" and "exceeds the model's context" in by_id["1"].error
    assert by_id["2"].error is None and by_id["2"].new_tokens > 0
