"""LoRA: an adapter trains, saves alone, and is evaluated on its base exactly as the same adapter
merged into the base and saved as a full model; adapters of one base share one loaded base."""

from __future__ import annotations

import json

import pytest

import harness.adapters as adapters
from harness.errors import InputError
from harness.models import ModelSpec, load, load_registry
from harness.results import RunFolder
from harness.sft.lora import LoraSettings
from harness.sft.settings import TUTORIAL, settings_from_yaml

from .conftest import chat_rows, jsonl, run_args, run_cli, sft_args

SUITE = """name: plus
defaults: {max_new_tokens: 10, scorer: numeric}
questions:
""" + "".join(f"  - {{id: q{a}, prompt: 'What is {a} + 1?', answer: {a + 1}}}\n" for a in range(8))


# questions the training rows do not hold (the contamination check would refuse them)
HELD_OUT = SUITE.replace("+ 1?", "+ 100?")


def outputs(folder, model):
    rows = RunFolder(folder).read_samples()
    return {r["id"]: (r["output"], r["finish_reason"]) for r in rows if r["model"] == model}


@pytest.fixture(scope="module")
def trained(chat_model_dir, tmp_path_factory):
    """Two adapters of the chat model, trained with different learning rates."""
    root = tmp_path_factory.mktemp("lora")
    data = root / "d.jsonl"
    data.write_text(jsonl(chat_rows(256)))
    made = {}
    for name, lr in (("a1", 2e-2), ("a2", 5e-2)):
        config = root / f"{name}.yaml"
        config.write_text(f"epochs: 4\nlearning_rate: {lr}\nlora: {{r: 8, alpha: 16}}\n")
        out = root / name
        assert run_cli(*sft_args(chat_model_dir, data, out, config=config)) == 0
        made[name] = out
    return root, made


def test_the_adapter_is_saved_alone_and_names_its_base(trained, chat_model_dir):
    _, made = trained
    folder = made["a1"]
    assert (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "config.json").exists() and not (folder / "model.safetensors").exists()
    info = json.loads((folder / "sft.json").read_text())
    assert info["adapter"] is True and info["settings"]["lora"]["r"] == 8
    assert (
        0
        < info["trainable_parameters"]
        < load(ModelSpec("b", "path", str(chat_model_dir))).n_params
    )
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (folder / config["base_model_name_or_path"]).resolve() == chat_model_dir.resolve()
    # learning rate as chosen: not scaled by lora.lr_scale
    assert info["settings"]["learning_rate"] == pytest.approx(2e-2)


def test_an_adapter_decodes_as_its_merged_full_model(trained, chat_model_dir, write, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, made = trained
    suite = write("plus.yaml", SUITE)
    merged = tmp_path / "merged"
    base = AutoModelForCausalLM.from_pretrained(chat_model_dir)
    PeftModel.from_pretrained(base, made["a1"]).merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(chat_model_dir).save_pretrained(merged)
    # the adapter first, then its base: the base must come back without the adapter
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert run_cli(*run_args(suite, f"{made['a1']},{chat_model_dir}", both)) == 0
    assert run_cli(*run_args(suite, f"{merged},{chat_model_dir}", alone)) == 0
    assert outputs(both, str(made["a1"])) == outputs(alone, str(merged))
    assert outputs(both, str(chat_model_dir)) == outputs(alone, str(chat_model_dir))
    assert outputs(both, str(made["a1"])) != outputs(both, str(chat_model_dir))  # it learned
    info = RunFolder(both).read_run()["models"][str(made["a1"])]
    base_print = RunFolder(both).read_run()["models"][str(chat_model_dir)]["fingerprint"]
    assert info["adapter"]["base_fingerprint"] == base_print
    assert info["fingerprint"] not in (base_print, info["adapter"]["adapter_fingerprint"])


def test_adapters_of_one_base_load_it_once(trained, chat_model_dir, write, tmp_path, monkeypatch):
    _, made = trained
    suite = write("plus.yaml", SUITE)
    loads = []
    real = adapters.load
    monkeypatch.setattr(adapters, "load", lambda spec, **kw: loads.append(spec) or real(spec, **kw))
    shared = tmp_path / "shared"
    models = f"{made['a1']},{chat_model_dir},{made['a2']}"
    assert run_cli(*run_args(suite, models, shared)) == 0
    assert len(loads) == 1
    for name in ("a1", "a2"):  # each as it decodes alone on a fresh base
        alone = tmp_path / name
        assert run_cli(*run_args(suite, made[name], alone)) == 0
        assert outputs(shared, str(made[name])) == outputs(alone, str(made[name]))
    assert outputs(shared, str(made["a1"])) != outputs(shared, str(made["a2"]))


def test_a_registered_adapter_resolves_its_base_by_name(trained, chat_model_dir, tmp_path):
    _, made = trained
    registry = tmp_path / "models.yaml"
    registry.write_text(
        f"models:\n  tiny:\n    path: {chat_model_dir}\n"
        f"  tuned:\n    adapter: {made['a1']}\n    base: tiny\n"
    )
    specs = load_registry(registry)
    assert specs["tuned"].source == "adapter" and specs["tuned"].base == "tiny"
    assert adapters.base_spec(specs["tuned"], specs) == specs["tiny"]


def test_bad_adapters_name_the_adapter_and_its_base(trained, tiny_tokenizer, tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from harness.tiny import MODEL_SHAPE

    _, made = trained
    lost = ModelSpec("lost", "adapter", str(made["a1"]), base=str(tmp_path / "gone"))
    with pytest.raises(InputError, match=r"adapter 'lost' .*its base '.*gone' cannot be found"):
        load(lost)
    # a base of another shape: peft's size mismatch, said with both names
    other = tmp_path / "wide"
    shape = {**MODEL_SHAPE, "intermediate_size": 2 * MODEL_SHAPE["intermediate_size"]}
    Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tiny_tokenizer), **shape)).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    wrong = ModelSpec("wrong", "adapter", str(made["a1"]), base=str(other))
    with pytest.raises(InputError, match=r"adapter 'wrong' .* does not fit its base '.*wide'"):
        load(wrong)


def test_a_lora_curve_ends_where_the_saved_adapter_starts(chat_model_dir, write, tmp_path):
    """The curve decodes the adapter being trained merged, as `harness run` decodes it saved."""
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suite = write("plus.yaml", HELD_OUT)
    config = write("c.yaml", "epochs: 2\nlearning_rate: 2.0e-2\nlora: {r: 4, alpha: 8}\n")
    out = tmp_path / "m"
    args = sft_args(chat_model_dir, data, out, config=config)
    assert run_cli(*args, "--eval-suites", str(suite), "--eval-points", "3") == 0
    points = RunFolder(out / "curve").read_run()["models"]
    last = max(points, key=lambda m: int(m.split("@step-")[1]))
    assert run_cli(*run_args(suite, out, tmp_path / "run")) == 0
    assert outputs(out / "curve", last) == outputs(tmp_path / "run", str(out))


def test_the_pipeline_trains_and_compares_an_adapter(chat_model_dir, write, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suite = write("plus.yaml", HELD_OUT)
    config = write("c.yaml", "epochs: 1\nlora: {r: 4, alpha: 8}\n")
    out = tmp_path / "p"
    args = ["pipeline", "--base", str(chat_model_dir), "--data", str(data), "--suite", str(suite)]
    args += ["--name", "p", "--out", str(out), "--config", str(config), "--quiet"]
    assert run_cli(*args) == 0
    assert (out / "model" / "adapter_config.json").is_file()
    models = RunFolder(out / "run").read_run()["models"]
    assert set(models) == {str(chat_model_dir), "p"} and "adapter" in models["p"]
    assert "p" in (out / "comparison.md").read_text()


def test_a_killed_lora_run_resumes_from_its_checkpoint(
    chat_model_dir, write, tmp_path, monkeypatch
):
    from transformers import TrainerCallback

    import harness.sft.train as train_module

    data = write("d.jsonl", jsonl(chat_rows(64)))
    config = write("c.yaml", "epochs: 3\nsave_steps: 2\nlora: {r: 4, alpha: 8}\n")
    out = tmp_path / "m"

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                raise KeyboardInterrupt("killed at step 5")

    real = train_module.make_trainer

    def crashing(*args, **kwargs):
        trainer, route = real(*args, **kwargs)
        trainer.add_callback(Crash())
        return trainer, route

    monkeypatch.setattr(train_module, "make_trainer", crashing)
    assert run_cli(*sft_args(chat_model_dir, data, out, config=config)) == 130  # interrupted
    assert (out / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    monkeypatch.setattr(train_module, "make_trainer", real)
    assert run_cli(*sft_args(chat_model_dir, data, out, config=config)) == 0
    info = json.loads((out / "sft.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-4") and info["steps"] == 6
    assert (out / "adapter_model.safetensors").is_file() and not (out / "checkpoints").exists()
    assert load(ModelSpec("m", "adapter", str(out))).adapter == "m"


def test_the_invariant_decoder_reads_the_adapter_merged(trained, chat_model_dir):
    """The GPU's decoder reads weights, not modules: through peft's wrapped layers it must see
    the merged weights (its torch reference computes the same functions on a CPU)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from harness.invariant import InvariantDecoder

    _, made = trained
    lm = load(ModelSpec("a1", "adapter", str(made["a1"])))
    ids = [lm.tokenizer(f"What is {a} + 1?")["input_ids"] for a in range(6)]
    with lm.decoding():
        tuned = InvariantDecoder(lm.model, backend="torch").generate(ids, 8, [], pad_id=0)
    base = AutoModelForCausalLM.from_pretrained(chat_model_dir)
    merged = PeftModel.from_pretrained(base, made["a1"]).merge_and_unload()
    expected = InvariantDecoder(merged, backend="torch").generate(ids, 8, [], pad_id=0)
    assert torch.equal(tuned.tokens, expected.tokens)
    plain = InvariantDecoder(lm.model, backend="torch").generate(ids, 8, [], pad_id=0)
    assert not torch.equal(plain.tokens, tuned.tokens)  # afterwards: the base's own weights


def test_a_lora_section_is_true_false_or_a_mapping_of_its_settings(write):
    read = lambda text: settings_from_yaml(write("l.yaml", text), TUTORIAL)[0].lora  # noqa: E731
    assert read("lora: true\n") == LoraSettings() and read("lora: false\n") is None
    assert read("lora: {r: 4, lr_scale: 2}\n") == LoraSettings(r=4, lr_scale=2.0)
    with pytest.raises(InputError) as info:
        read("lora: [r]\n")
    assert str(info.value).endswith("l.yaml:1: lora: expected true or a mapping, got ['r']")
    with pytest.raises(InputError) as info:
        read("lora:\n  target_modules: []\n  alpha: 0\n  r: 2.5\n")
    assert [(p.line, p.field, p.message) for p in info.value.problems] == [
        (2, "lora.target_modules", "expected a list of names, got []"),
        (3, "lora.alpha", "expected a number above 0, got 0"),
        (4, "lora.r", "expected an integer >= 1, got 2.5"),
    ]
