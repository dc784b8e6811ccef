"""The static-cache decoder computes the same greedy function as transformers' generate."""

from __future__ import annotations

import pytest
import torch

from harness.chat import render
from harness.fastdecode import greedy_static
from harness.models import ModelSpec, load
from harness.runner import Request, generate

from .test_runner import PROMPTS, assert_close_margins, without_margins


@pytest.fixture(scope="module", params=["random", "chat"])
def lm(request, random_model_dir, chat_model_dir):
    folder = random_model_dir if request.param == "random" else chat_model_dir
    return load(ModelSpec(request.param, "path", str(folder)), device="cpu", dtype="float32")


def test_static_decoder_equals_generate_on_cpu_float32(lm):
    reqs = [Request(str(i), render(lm.tokenizer, p), 20) for i, p in enumerate(PROMPTS)]
    hf = {g.id: g for b in generate(lm, reqs, batch_size=5, decoder="hf") for g in b}
    static = {g.id: g for b in generate(lm, reqs, batch_size=5, decoder="static") for g in b}
    assert without_margins(static) == without_margins(hf)
    assert_close_margins(static, hf)


def test_static_decoder_stops_early_when_every_row_stopped(chat_model_dir):
    lm = load(ModelSpec("chat", "path", str(chat_model_dir)), device="cpu", dtype="float32")
    enc = lm.tokenizer(
        [render(lm.tokenizer, "What is 2 + 3?")] * 3,
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    ids, _ = greedy_static(
        lm.model,
        enc["input_ids"],
        enc["attention_mask"],
        200,
        list(lm.chat.stop_token_ids),
        cuda_graph=False,
    )
    assert ids.shape[1] < 200  # stopped at the first check after every row ended
    assert torch.isin(ids, torch.tensor(lm.chat.stop_token_ids)).any(-1).all()


def test_the_graph_paths_warm_up_and_reset_change_nothing(chat_model_dir):
    """On a GPU the step runs twice before capture; every counter must be put back after."""
    lm = load(ModelSpec("chat", "path", str(chat_model_dir)), device="cpu", dtype="float32")
    enc = lm.tokenizer(
        [render(lm.tokenizer, p) for p in PROMPTS[:6]],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    args = (lm.model, enc["input_ids"], enc["attention_mask"], 30, [])
    plain, _ = greedy_static(*args, cuda_graph=False)
    rehearsed, _ = greedy_static(*args, cuda_graph=False, rehearse=True)
    assert torch.equal(plain, rehearsed)
    for steps in (2, 3):  # the shortest runs: the warm-up's two steps must fit or be skipped
        short = (*args[:3], steps, [])
        rehearsed, _ = greedy_static(*short, cuda_graph=False, rehearse=True)
        assert torch.equal(rehearsed, plain[:, :steps])
