"""Packed, padding-free SFT (harness's CUDA default): rows share a sequence but never attend to
each other, only assistant tokens are trained, and the saved model is an ordinary checkpoint."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from harness.models import ModelSpec, load
from harness.sft import planning, varlen
from harness.sft import trainer as train_module
from harness.sft.compiling import compile_layers
from harness.sft.data import load_data
from harness.sft.planning import for_device, plan_steps
from harness.sft.settings import EMBEDDED, FAST, TUTORIAL, default_settings, respect_choices
from harness.sft.trainer import make_trainer

from .conftest import PACKED, chat_rows, jsonl, run_cli, sft_args


def reference(q, k, v, offset: int = 0):
    """Causal attention spelled out: softmax(q k^T / sqrt(d) + causal mask) v, GQA by repeat."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    allowed = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(offset)
    return (scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v).transpose(1, 2)


def qkv(tokens: int, seed: int = 0, kv_tokens: int | None = None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 4, tokens, 8, generator=g)
    k = torch.randn(1, 2, kv_tokens or tokens, 8, generator=g)
    v = torch.randn(1, 2, kv_tokens or tokens, 8, generator=g)
    return q, k, v


def test_varlen_attention_keeps_packed_rows_apart():
    q, k, v = qkv(12)
    lengths = [5, 3, 4]
    cu = torch.tensor([0, 5, 8, 12])
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    by_cu, _ = varlen.varlen_attention(None, q, k, v, None, cu_seq_lens_q=cu)
    by_positions, _ = varlen.varlen_attention(None, q, k, v, None, position_ids=position_ids)
    for a, b in zip(cu.tolist(), cu.tolist()[1:], strict=False):
        alone = reference(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b])
        torch.testing.assert_close(by_cu[:, a:b], alone)
        torch.testing.assert_close(by_positions[:, a:b], alone)
    # the whole sequence as one row is a different (contaminated) answer: the test can tell
    assert not torch.allclose(by_cu, reference(q, k, v), atol=1e-3)


def test_varlen_attention_outside_packing_is_plain_causal_attention():
    q, k, v = qkv(7)
    out, _ = varlen.varlen_attention(None, q, k, v, None)
    torch.testing.assert_close(out, reference(q, k, v))
    q, k, v = qkv(2, kv_tokens=9)  # decoding with a KV cache: the queries are the last 2 tokens
    out, _ = varlen.varlen_attention(None, q, k, v, None)
    torch.testing.assert_close(out, reference(q, k, v, offset=7))
    with pytest.raises(ValueError, match="not padding masks"):
        varlen.varlen_attention(None, *qkv(4), torch.tensor([[0, 1, 1, 1]]))


def test_grouped_kv_heads_reach_the_kernel_unrepeated(monkeypatch):
    """Repeating key/value heads costs two copies and two reductions a layer: torch's kernel
    takes them as they are, with enable_gqa where it has the keyword; repeated only where a
    torch refuses unequal heads (once, with a warning) or when asked to (benchmarks)."""
    seen: list[tuple] = []

    def kernel(refuse: bool):
        def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, **kwargs):
            seen.append((k.shape[1], v.shape[1], kwargs.get("enable_gqa")))
            if refuse and k.shape[1] != q.shape[1]:
                raise RuntimeError("number of heads in key/value must equal query")
            return q

        return varlen_attn

    q, k, v = torch.randn(10, 4, 8), torch.randn(10, 2, 8), torch.randn(10, 2, 8)
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    monkeypatch.setattr(varlen, "_GQA", {"native": True, "settled": False})
    newer = {"window_size", "enable_gqa"}
    monkeypatch.setattr(varlen, "_varlen_options", lambda: (kernel(False), newer))
    varlen._varlen(q, k, v, cu, 6, 0.3)
    assert seen == [(2, 2, True)]
    monkeypatch.setattr(varlen, "_varlen_options", lambda: (kernel(False), {"window_size"}))
    varlen._varlen(q, k, v, cu, 6, 0.3)
    assert seen[-1] == (2, 2, None)  # torch 2.11: no keyword, unequal heads accepted
    assert varlen._GQA["settled"]  # the kernel took them: the next call has no fallback
    seen.clear()
    varlen.use_native_gqa(True)  # unsettled again
    monkeypatch.setattr(varlen, "_varlen_options", lambda: (kernel(True), {"window_size"}))
    with pytest.warns(UserWarning, match="key/value heads repeated"):
        varlen._varlen(q, k, v, cu, 6, 0.3)
    varlen._varlen(q, k, v, cu, 6, 0.3)
    assert seen == [(2, 2, None), (4, 4, None), (4, 4, None)]  # refused once, then repeated
    assert varlen._GQA == {"native": False, "settled": True}
    monkeypatch.setattr(varlen, "_varlen_options", lambda: (kernel(False), newer))
    varlen.use_native_gqa(False)
    varlen._varlen(q, k, v, cu, 6, 0.3)
    assert seen[-1] == (4, 4, None)
    varlen.use_native_gqa(True)


@torch.library.custom_op("harness_test::varlen_attn_2_11", mutates_args=())
def _varlen_2_11(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, longest: int) -> torch.Tensor:
    return q.clone()


@_varlen_2_11.register_fake
def _(q, k, v, longest):
    return torch.empty_like(q)


def varlen_attn_2_11(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, is_causal=False):
    """Stands in for torch 2.11's varlen_attn: no enable_gqa keyword, unequal heads taken."""
    return _varlen_2_11(q, k, v, max_q)


@pytest.mark.parametrize("torch_version", ["this torch", "2.11"])
def test_settled_attention_kernel_compiles_into_the_layer(monkeypatch, torch_version):
    """A graph break around attention in each compiled layer cost 12% of a Qwen3-0.6B step
    (benchmarks/RESULTS.md): once the kernel has said whether it takes grouped key/value heads,
    torch.compile traces the call whole (this torch's own varlen_attn traced through its fake, or
    2.11's signature, where the grouped heads go without a keyword); the CUDA kernel never runs
    here. Before that, attention stays a graph break."""
    options = varlen._varlen_options()
    if options is None:
        pytest.skip("this torch has no varlen_attn")
    if torch_version == "2.11":
        options = (varlen_attn_2_11, {"q", "scale", "is_causal"})
        monkeypatch.setattr(varlen, "_varlen_options", lambda: options)
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        raise RuntimeError("traced")  # the CPU cannot run the Flash kernel: stop after tracing

    q, k, v = torch.randn(10, 4, 8), torch.randn(10, 2, 8), torch.randn(10, 2, 8)
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    monkeypatch.setattr(varlen, "_GQA", {"native": True, "settled": False})
    monkeypatch.setattr(varlen, "_TRACED", {"on": True})

    def layer():  # the kernel between other work of a compiled layer, as varlen_attention picks
        return torch.compile(
            lambda q, k, v: varlen._kernel()(q * 2, k, v, cu, 6, 0.3) + 1,
            backend=record,
            fullgraph=True,
        )

    with pytest.raises(Exception, match="disable"):  # unsettled: a graph break
        layer()(q, k, v)
    varlen._GQA["settled"] = True
    with pytest.raises(Exception, match="traced"):
        layer()(q, k, v)
    targets = [str(n.target) for n in graphs[-1].graph.nodes if n.op == "call_function"]
    assert any("varlen_attn" in t for t in targets), targets
    varlen.trace_attention(False)  # the benchmarks' graph-break configuration
    with pytest.raises(Exception, match="disable"):
        layer()(q, k, v)
    assert varlen.settle_gqa("cpu", 8) is False


@pytest.fixture
def packed_trainer(random_model_dir, write, tmp_path):
    lm = load(ModelSpec("m", "path", str(random_model_dir)), device="cpu")
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))
    trainer, route = make_trainer(lm, data, PACKED, tmp_path / "ck", progress=False)
    return lm, trainer, route


def test_packed_batch_equals_rows_run_alone(packed_trainer):
    lm, trainer, route = packed_trainer
    assert route == "assistant_only_loss"
    batch = next(iter(trainer.get_train_dataloader()))
    ids, pos = batch["input_ids"], batch["position_ids"]
    assert ids.shape[0] == 1 and "attention_mask" not in batch  # one flattened row, no padding
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    assert len(starts) > 8  # many conversations share the sequence
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        for a, b in zip(starts, starts[1:], strict=False):
            alone = model(input_ids=ids[:, a:b]).logits[0]
            torch.testing.assert_close(packed[a:b], alone, atol=1e-5, rtol=1e-5)
    # and the loss covers the assistant's answers only, each ending in the turn-end token
    labels = batch["labels"][0]
    for a, b in zip(starts, starts[1:], strict=False):
        row = labels[a:b]
        trained = lm.tokenizer.decode(ids[0, a:b][row != -100])
        assert re.fullmatch(r"\d+ \+ 1 = \d+<\|im_end\|>", trained), trained


def test_packed_loss_is_the_token_mean_over_rows(packed_trainer):
    """Packing changes how rows are laid out, not the loss a step optimises."""
    _, trainer, _ = packed_trainer
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.eval()
    ids, labels, pos = batch["input_ids"], batch["labels"], batch["position_ids"]
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    total, count = 0.0, 0
    with torch.no_grad():
        for a, b in zip(starts, starts[1:], strict=False):
            logits = model(input_ids=ids[:, a:b]).logits[0, :-1]
            target = labels[0, a + 1 : b]
            keep = target != -100
            total += F.cross_entropy(logits[keep], target[keep], reduction="sum").item()
            count += int(keep.sum())
        loss = trainer.compute_loss(model, batch)
    assert loss.item() == pytest.approx(total / count, rel=1e-4)


def test_compiled_layers_compute_what_eager_layers_do(random_model_dir, write, tmp_path):
    """harness's CUDA default compiles each decoder layer; the loss and every gradient of a packed
    step must be the eager ones (aot_eager: the same capture as inductor, no C++ compiler), also
    with activation checkpointing (what a card too small for a sequence gets, memory.py)."""
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))
    results = []
    for compiled, checkpointed in ((False, False), (True, False), (True, True)):
        lm = load(ModelSpec("m", "path", str(random_model_dir)), device="cpu")
        settings = replace(PACKED, activation_checkpointing=checkpointed)
        trainer, _ = make_trainer(lm, data, settings, tmp_path / f"{len(results)}", progress=False)
        before = counters["stats"]["unique_graphs"]
        if compiled:
            logs: list[str] = []
            assert compile_layers(trainer.model, backend="aot_eager", log=logs.append) == 2
            assert logs[0].startswith("compile: 2 x Qwen3DecoderLayer (aot_eager, dynamic")
        if checkpointed:  # as Trainer.train() does (transformers 5.24 renamed the method)
            model = trainer.model
            getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
        batches = iter(trainer.get_train_dataloader())
        losses, graphs = [], []
        for _ in range(2):  # two packed lengths
            batch = next(batches)
            loss = trainer.compute_loss(trainer.model, batch)
            loss.backward()
            losses.append(loss.item())
            graphs.append((batch["input_ids"].shape[1], counters["stats"]["unique_graphs"]))
        if compiled and not checkpointed:  # compiled at the first length, nothing new after
            assert graphs[0][1] > before
            assert graphs[0][0] != graphs[1][0] and graphs[0][1] == graphs[1][1]
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
        results.append((losses, grads, set(trainer.model.state_dict())))
    (eager_loss, eager_grads, eager_keys), *others = results
    for loss, grads, keys in others:
        assert loss == pytest.approx(eager_loss, rel=1e-5)
        assert keys == eager_keys  # compiled in place: checkpoints keep their names
        for name, grad in grads.items():
            torch.testing.assert_close(grad, eager_grads[name], atol=1e-5, rtol=1e-4)


def test_compile_setting_compiles_the_layers(random_model_dir, write, tmp_path, monkeypatch):
    seen, asked = [], []
    monkeypatch.setattr(train_module, "compile_layers", lambda m, log: seen.append(m))
    monkeypatch.setattr(varlen, "settle_gqa", lambda *a: asked.append(a))
    lm = load(ModelSpec("m", "path", str(random_model_dir)), device="cpu")
    data = load_data(write("d.jsonl", jsonl(chat_rows(8))))
    trainer, _ = make_trainer(lm, data, replace(PACKED, compile=True), tmp_path, progress=False)
    assert seen == [trainer.model]
    c = lm.model.config  # the attention kernel is asked about grouped heads before compiling
    assert asked == [
        ("cpu", getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
    ]
    logs: list[str] = []
    has = {"triton": True, "liger_kernel": True}
    monkeypatch.setattr(
        planning.importlib.util, "find_spec", lambda name: object() if has[name] else None
    )
    both = for_device(replace(FAST, liger=True), "cuda", logs.append)
    assert both.compile and not both.liger
    assert logs == ["liger: off (the compiled layers fuse the same operations)"]
    has["triton"] = False  # no Triton: Liger's kernels where asked for, else PyTorch's own
    liger = for_device(replace(FAST, liger=True), "cuda", logs.append)
    assert not liger.compile and liger.liger
    assert logs[-1] == "compile: off (torch.compile for CUDA needs the triton package)"


def test_packed_sft_trains_and_saves_an_ordinary_checkpoint(random_model_dir, write, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(120)))
    config = write(
        "packed.yaml",
        "packing: true\nattention: harness_varlen\nliger: true\nmax_length: 256\nbatch_size: 2\n"
        "epochs: 2\nlogging_steps: 2\n",
    )
    out = tmp_path / "tuned"
    assert run_cli(*sft_args(random_model_dir, data, out, config=config)) == 0
    info = json.loads((out / "sft.json").read_text())
    assert info["settings"]["packing"] is True and info["settings"]["liger"] is False  # CPU
    curve = [p["loss"] for p in info["loss_curve"]]
    assert curve[-1] < curve[0]
    assert "harness_varlen" not in (out / "config.json").read_text()
    reloaded = load(ModelSpec("t", "path", str(out)), device="cpu")
    assert reloaded.model.config._attn_implementation != varlen.ATTENTION


def test_bad_boolean_setting_is_named(random_model_dir, write, tmp_path, capsys):
    data = write("d.jsonl", jsonl(chat_rows(8)))
    config = write(
        "bad.yaml",
        "packing: 3\nattention: flash\noptimizer: adam\nlr_scheduler: cosine\n"
        "loader_workers: -1\nmemory_fraction: 1.5\nbatch_size: 0\nlogging_steps: 0\nepochs: 0\n",
    )
    assert run_cli(*sft_args(random_model_dir, data, tmp_path / "x", config=config)) == 2
    err = capsys.readouterr().err
    assert f"{config}:1: packing: expected bool, got 3" in err
    assert f"{config}:2: attention: 'flash' is not one of: , eager, sdpa, flex_attention" in err
    assert f"{config}:3: optimizer: 'adam' is not one of:" in err and "adamw_torch_fused" in err
    assert "lr_scheduler" not in err  # a valid value
    assert f"{config}:5: loader_workers: must be at least 0, got -1" in err
    assert f"{config}:6: memory_fraction: must be between 0 and 1, got 1.5" in err
    assert f"{config}:7: batch_size: must be at least 1, got 0" in err
    assert f"{config}:8: logging_steps: must be at least 1, got 0" in err
    assert f"{config}:9: epochs: must be above 0, got 0" in err


def test_presets_by_model_size_and_device():
    assert default_settings(500_000, "cuda") == ("embedded", EMBEDDED)
    assert default_settings(600_000_000, "cuda:1") == ("fast", FAST)
    assert default_settings(600_000_000, "cpu") == ("tutorial", TUTORIAL)
    assert FAST.packing and FAST.attention == varlen.ATTENTION and not FAST.activation_checkpointing


def test_steps_are_sized_to_the_data():
    logs: list[str] = []
    small = plan_steps(FAST, [50] * 6000, log=logs.append)  # 300k tokens: 32k-token steps = 9
    assert (small.batch_size, small.max_length) == (1, 1536)  # about 195 steps of ~31 rows
    assert small.learning_rate == pytest.approx(8e-5 * 6000 / 196 / 8, rel=1e-6)
    assert "about 196 steps of 31 rows" in logs[0] and "learning rate 8e-05 x 31/8 rows" in logs[0]
    big = plan_steps(FAST, [1000] * 50_000, log=logs.append)  # 50M tokens: full-size steps
    assert (big.batch_size, big.max_length) == (4, 8192)
    assert big.learning_rate == pytest.approx(8e-5 * 50_000 / 1526 / 8, rel=1e-6)
    short = plan_steps(FAST, [40] * 2_000_000, log=logs.append)  # 400 rows a step: capped
    assert short.learning_rate == FAST.lr_max and "(the cap, lr_max)" in logs[-1]
    long_row = plan_steps(FAST, [3000] + [50] * 100, log=logs.append)
    assert long_row.max_length == 3000  # a row is never cut to make more steps
    two = plan_steps(FAST, [50] * 6000, processes=2, log=logs.append)
    assert two.max_length == 768  # the same tokens a step, split over two processes
    few_long = plan_steps(FAST, [1000] * 400, log=logs.append)  # 50 steps of 8 rows, not 200 of 2
    assert few_long.max_length == 8000 and few_long.learning_rate == pytest.approx(8e-5)
    assert plan_steps(TUTORIAL, [50] * 10) == TUTORIAL  # unpacked settings stay as they are


def test_chosen_settings_are_not_replanned():
    logs: list[str] = []
    mine = respect_choices(
        replace(FAST, learning_rate=1e-4, max_length=512),
        {"learning_rate", "max_length"},
        logs.append,
    )
    assert mine.lr_reference_rows == 0 and mine.min_steps == 0
    planned = plan_steps(mine, [50] * 6000, log=logs.append)
    assert (planned.learning_rate, planned.max_length, planned.batch_size) == (1e-4, 512, 4)
    assert logs[0] == "learning rate 0.0001 as chosen (not scaled to the step size)"
    assert respect_choices(FAST, {"epochs"}) == FAST
    warm = plan_steps(respect_choices(FAST, {"warmup_steps"}), [50] * 6000, log=logs.append)
    assert warm.warmup_steps == FAST.warmup_steps  # not cut to 5% of the steps
    assert plan_steps(FAST, [1000] * 400, log=logs.append).warmup_steps == 2  # 5% of 50 steps


def test_packing_with_completion_only_loss(random_model_dir, write, tmp_path):
    """Templates without generation marks train prompt/completion pairs; packed, too."""
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    spec = ModelSpec("m", "path", str(random_model_dir), chat_template=chatml)
    lm = load(spec, device="cpu")
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))
    trainer, route = make_trainer(lm, data, PACKED, tmp_path / "ck", progress=False)
    assert route == "completion_only_loss"
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels, pos = batch["input_ids"][0], batch["labels"][0], batch["position_ids"][0]
    starts = (pos == 0).nonzero().flatten().tolist() + [len(ids)]
    assert len(starts) > 8
    for a, b in zip(starts, starts[1:], strict=False):
        trained = lm.tokenizer.decode(ids[a:b][labels[a:b] != -100])
        assert re.fullmatch(r"\d+ \+ 1 = \d+<\|im_end\|>\n?", trained), trained
