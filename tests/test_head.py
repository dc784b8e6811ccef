"""The sync-free training step (harness/sft/head.py): TRL's loss, gradients and logged metrics,
without reading anything back from the device during a step."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.models import ModelSpec, load
from harness.sft import head, syncfree, varlen
from harness.sft.data import load_data
from harness.sft.settings import EMBEDDED, FAST, TUTORIAL
from harness.sft.trainer import make_trainer

from .conftest import PACKED, chat_rows, jsonl, run_cli, sft_args


def rows_with_prompts(n: int) -> list[dict]:
    """Prompt/completion rows: the completion_only_loss route."""
    return [
        {
            "prompt": [{"role": "user", "content": f"{i} + 2?"}],
            "completion": [{"role": "assistant", "content": f"{i} + 2 = {i + 2}"}],
        }
        for i in range(n)
    ]


def plain(batch: dict) -> dict:
    """The batch as TRL's collator made it (without what LabelledPositions adds)."""
    return {k: v for k, v in batch.items() if k not in head.COLLATED}


def trainers(model_dir, data, settings, tmp_path, tweak=None):
    """TRL's trainer and the sync-free one, each on its own copy of the same model (`tweak`:
    applied to each loaded model first)."""
    made = []
    for sync_free in (False, True):
        lm = load(ModelSpec("m", "path", str(model_dir)), device="cpu")
        if tweak:
            tweak(lm.model)
        s = replace(settings, sync_free=sync_free)
        made.append(make_trainer(lm, data, s, tmp_path / str(sync_free), progress=False)[0])
    return made


@pytest.mark.parametrize(
    "settings,rows",
    [(PACKED, "chat"), (EMBEDDED, "chat"), (PACKED, "prompts")],
    ids=["packed", "padded", "completion-only"],
)
def test_sync_free_step_is_trls_step(random_model_dir, write, tmp_path, settings, rows):
    made = chat_rows(40) if rows == "chat" else rows_with_prompts(40)
    data = load_data(write("d.jsonl", jsonl(made)))
    trl, fast = trainers(random_model_dir, data, settings, tmp_path)
    assert isinstance(fast, syncfree.SyncFreeSFTTrainer)
    assert not isinstance(trl, syncfree.SyncFreeSFTTrainer)
    batch = next(iter(fast.get_train_dataloader()))
    assert batch[head.POSITIONS].numel() == int((batch["labels"][:, 1:] != -100).sum()) > 0
    trl_batch = plain(batch)
    results = []
    for trainer, inputs in ((trl, trl_batch), (fast, dict(batch))):
        trainer.model.train()
        count = torch.tensor(17)  # as Trainer passes it: labelled tokens of all micro-batches
        loss = trainer.compute_loss(trainer.model, inputs, num_items_in_batch=count)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
        metrics = {k: [float(v) for v in vals] for k, vals in trainer._metrics["train"].items()}
        results.append((loss.item(), grads, metrics, trainer._total_train_tokens))
    (loss, grads, metrics, tokens), (fast_loss, fast_grads, fast_metrics, fast_tokens) = results
    assert fast_loss == pytest.approx(loss, rel=1e-5)
    for name, grad in grads.items():  # the tied embedding gets the head's gradient too
        torch.testing.assert_close(fast_grads[name], grad, atol=1e-6, rtol=1e-4)
    assert fast_metrics.keys() == metrics.keys() == {"entropy", "mean_token_accuracy", "num_tokens"}
    for key, values in metrics.items():
        assert fast_metrics[key] == pytest.approx(values, rel=1e-5)
    assert fast_tokens == tokens > 0


@contextlib.contextmanager
def no_reads_back(monkeypatch):
    """Every way a step could read a tensor's value on the host raises: on a GPU each one waits
    for the queue to drain. Except inside the per-row attention that stands in on the CPU for
    the CUDA kernel, which takes the row boundaries as a device tensor."""
    lifted = {"depth": 0}

    def refuse(name, original):
        def guarded(*args, **kwargs):
            if lifted["depth"]:
                return original(*args, **kwargs)
            raise AssertionError(f"the step read a tensor back ({name})")

        return guarded

    per_row = varlen._per_row

    def kernel_stand_in(*args, **kwargs):
        lifted["depth"] += 1
        try:
            return per_row(*args, **kwargs)
        finally:
            lifted["depth"] -= 1

    with monkeypatch.context() as m:
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero", "numpy"):
            m.setattr(torch.Tensor, name, refuse(name, getattr(torch.Tensor, name)))
        m.setattr(torch, "nonzero", refuse("torch.nonzero", torch.nonzero))
        m.setattr(varlen, "_per_row", kernel_stand_in)
        yield


def test_sync_free_step_reads_nothing_back(random_model_dir, write, tmp_path, monkeypatch):
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))
    trl, fast = trainers(random_model_dir, data, PACKED, tmp_path)
    batch = next(iter(fast.get_train_dataloader()))
    with no_reads_back(monkeypatch):
        loss = fast.compute_loss(fast.model, dict(batch), num_items_in_batch=torch.tensor(9))
        loss.backward()
    # the guard catches TRL's head (on the CPU its .item() for the metrics; on a GPU it also
    # indexes with a boolean mask, a wait inside C++ that this guard would not see)
    trl_batch = plain(batch)
    with no_reads_back(monkeypatch), pytest.raises(AssertionError, match="read a tensor back"):
        trl.compute_loss(trl.model, trl_batch, num_items_in_batch=torch.tensor(9))


def test_fused_head_in_chunks_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=g, requires_grad=True)
    weight = torch.randn(50, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (37,), generator=g)
    logits = hidden @ weight.t()
    want = F.cross_entropy(logits, targets, reduction="sum")
    want.backward()
    want_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    small = head.Tile(head.EAGER.fn, 50 * 4 * 10)  # chunks of 10 tokens: 4 of them
    nll, entropy, correct = head.FusedHead.apply(hidden, weight, targets, None, small)
    (2 * nll).backward()  # the backward scales the forward's gradients by the incoming one
    torch.testing.assert_close(nll, want)
    torch.testing.assert_close(hidden.grad, 2 * want_grads[0])
    torch.testing.assert_close(weight.grad, 2 * want_grads[1])
    p = logits.softmax(-1)
    torch.testing.assert_close(entropy, -(p * p.log()).sum())
    assert int(correct) == int((logits.argmax(-1) == targets).sum())
    # no labelled token: a zero loss that still reaches the weights (an all-prompt micro-batch)
    nll, _, _ = head.FusedHead.apply(hidden[:0], weight, targets[:0])
    nll.backward()
    assert float(nll.detach()) == 0.0 and weight.grad is not None
    # a frozen head (PEFT) gets no gradient made for it; the hidden states still do
    hidden.grad, frozen = None, weight.detach()
    nll, _, _ = head.FusedHead.apply(hidden, frozen, targets, None, small)
    nll.backward()
    torch.testing.assert_close(hidden.grad, want_grads[0])


def test_sync_free_training_logs_trls_metrics(random_model_dir, write, tmp_path):
    """Metrics stay on the device between logging steps; the log holds plain numbers."""
    data = load_data(write("d.jsonl", jsonl(chat_rows(120))))
    settings = replace(PACKED, epochs=1, logging_steps=2)
    logs = []
    for trainer in trainers(random_model_dir, data, settings, tmp_path):
        trainer.train()
        logs.append([h for h in trainer.state.log_history if "loss" in h])
    trl, fast = logs
    assert len(fast) == len(trl) >= 3
    for a, b in zip(fast, trl, strict=True):
        assert a.keys() == b.keys() >= {"loss", "entropy", "mean_token_accuracy", "num_tokens"}
        assert all(isinstance(v, (int, float)) for v in a.values())
        assert a["num_tokens"] == b["num_tokens"]
        for key in ("loss", "entropy", "mean_token_accuracy", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key


def test_sync_free_is_the_cuda_default_and_a_setting(random_model_dir, write, tmp_path):
    assert FAST.sync_free and not TUTORIAL.sync_free  # the tutorial baseline stays TRL's
    data = write("d.jsonl", jsonl(chat_rows(40)))
    config = write("s.yaml", "packing: true\nattention: harness_varlen\nsync_free: true\n")
    out = tmp_path / "tuned"
    assert run_cli(*sft_args(random_model_dir, data, out, config=config)) == 0
    info = json.loads((out / "sft.json").read_text())
    assert info["settings"]["sync_free"] is True and info["tokens"] > 0


def test_a_step_without_labels_is_a_zero_loss(random_model_dir, write, tmp_path):
    """An all-prompt step (no trainable token anywhere): zero, not 0 / 0, and finite gradients
    (with the nan check off, a nan here would reach the weights unnoticed)."""
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))
    _, fast = trainers(random_model_dir, data, PACKED, tmp_path)
    batch = next(iter(fast.get_train_dataloader()))
    batch["labels"][:] = -100
    batch[head.POSITIONS] = batch[head.POSITIONS][:0]
    batch[head.TARGETS] = batch[head.TARGETS][:0]
    loss = fast.compute_loss(fast.model, batch, num_items_in_batch=torch.tensor(0))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(torch.isfinite(p.grad).all() for p in fast.model.parameters())


def test_evaluation_without_gradients_is_trls(random_model_dir, write, tmp_path):
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))
    trl, fast = trainers(random_model_dir, data, PACKED, tmp_path)
    batch = next(iter(fast.get_train_dataloader()))
    trl_batch = plain(batch)
    losses = []
    for trainer, inputs in ((trl, trl_batch), (fast, dict(batch))):
        trainer.model.eval()
        with torch.no_grad():
            losses.append(float(trainer.compute_loss(trainer.model, inputs)))
        assert set(trainer._metrics["eval"]) == {"entropy", "mean_token_accuracy", "num_tokens"}
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    # and no gradient was made for it
    assert all(p.grad is None for p in fast.model.parameters())


def test_models_with_scaled_logits_take_trls_head(random_model_dir, write, tmp_path):
    """FusedHead computes hidden @ weight.T only; Granite's logit scaling (and Gemma-2's
    soft-capping, biased heads) go through TRL's head, which applies them."""
    data = load_data(write("d.jsonl", jsonl(chat_rows(40))))

    def granite(model):  # Granite's scaling: logits x 20, far from the plain loss
        model.config.logits_scaling = 0.05

    trl, fast = trainers(random_model_dir, data, PACKED, tmp_path, tweak=granite)
    assert not syncfree.plain_head(fast.model) and not fast._takes_fast_path(False)
    batch = next(iter(fast.get_train_dataloader()))
    trl_batch = plain(batch)
    scaled = float(trl.compute_loss(trl.model, trl_batch).detach())
    assert float(fast.compute_loss(fast.model, dict(batch)).detach()) == pytest.approx(scaled)
    positions, targets = batch[head.POSITIONS], batch[head.TARGETS]
    hidden = fast.model.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    hidden = hidden.last_hidden_state.reshape(-1, hidden.last_hidden_state.shape[-1])[positions]
    unscaled, _, _ = head.FusedHead.apply(hidden, fast.model.lm_head.weight, targets)
    assert float(unscaled.detach()) / len(targets) != pytest.approx(scaled, rel=0.05)
    lm = load(ModelSpec("m", "path", str(random_model_dir)), device="cpu")
    assert syncfree.plain_head(lm.model)  # the unmodified model: the fast path
    lm.model.config.final_logit_softcapping = 30.0  # Gemma-2's
    assert not syncfree.plain_head(lm.model)


def test_a_trl_that_moves_what_the_step_relies_on_fails_loudly(monkeypatch):
    """The sync-free trainer fills TRL's private metrics: a TRL without them must stop here,
    not train or log differently."""
    import types

    import trl

    from harness.sft.syncfree import check_trl_contract

    check_trl_contract()  # this TRL's methods are the ones the step overrides
    with pytest.raises(HarnessError, match=r"TRL .* changed what .* relies on: _metrics"):
        check_trl_contract(types.SimpleNamespace())

    def log(self, logs):  # a log without start_time
        return None

    monkeypatch.setattr(trl.SFTTrainer, "log", log)
    full = types.SimpleNamespace(
        **dict.fromkeys(["_total_train_tokens", "_tp_size", "aux_loss_enabled"], 0),
        **dict.fromkeys(["compute_loss_func", "label_smoother", "get_tp_size"], None),
        _metrics={"train": {}, "eval": {}},
    )
    with pytest.raises(HarnessError, match=r"SFTTrainer.log\(self, logs, start_time\), found"):
        check_trl_contract(full)
    with pytest.raises(HarnessError, match=r"SFTTrainer.log\(self, logs, start_time\), found"):
        check_trl_contract()  # the class alone: what runs before TRL prepares the data


@pytest.mark.parametrize("moved", ["signature", "attribute"])
def test_building_a_sync_free_trainer_on_a_moved_trl_fails(
    random_model_dir, write, tmp_path, monkeypatch, moved
):
    """The check runs when the trainer is built: a run on such a TRL stops before its first
    step (a moved method before TRL prepares the data), naming TRL's version and what moved."""
    import trl

    if moved == "signature":

        def compute_loss(self, model, inputs, return_outputs=False):  # no num_items_in_batch
            return None

        def prepare(*args, **kwargs):
            raise AssertionError("TRL prepared the data before the check")

        monkeypatch.setattr(trl.SFTTrainer, "compute_loss", compute_loss)
        monkeypatch.setattr(trl.SFTTrainer, "_prepare_dataset", prepare)  # refused before this
        missing = r"SFTTrainer\.compute_loss\(self, model, inputs, return_outputs, num_items"
    else:  # a private field this TRL does not have, as a later TRL may drop one of its own
        monkeypatch.setattr(syncfree, "TRL_ATTRIBUTES", (*syncfree.TRL_ATTRIBUTES, "_gone"))
        missing = "_gone"
    lm = load(ModelSpec("m", "path", str(random_model_dir)), device="cpu")
    data = load_data(write("d.jsonl", jsonl(chat_rows(8))))
    version = trl.__version__.replace(".", r"\.")
    with pytest.raises(HarnessError, match=rf"^TRL {version} changed .*{missing}"):
        make_trainer(lm, data, replace(EMBEDDED, sync_free=True), tmp_path, progress=False)
