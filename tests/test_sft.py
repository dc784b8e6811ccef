"""The SFT stage on tiny real models: data formats, label masks, training, registry, overlap."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from harness.errors import InputError
from harness.models import ModelSpec, load, load_registry
from harness.results import RunFolder
from harness.sft import generate
from harness.sft.data import load_data, load_many
from harness.sft.lora import LoraSettings
from harness.sft.overlap import find_overlaps
from harness.sft.settings import EMBEDDED, TUTORIAL, settings_from_yaml
from harness.sft.trainer import make_trainer
from harness.suites import load_suites

from .conftest import PROJECT, chat_rows, jsonl, run_args, run_cli, sft_args

CHAT_ROWS = chat_rows(40)


# --------------------------------------------------------------------------- data formats


def test_three_formats_read_to_the_same_conversations(write, tmp_path):
    from datasets import Dataset

    chat = load_data(write("chat.jsonl", jsonl(CHAT_ROWS)))
    pc_rows = [
        {"prompt": r["messages"][0]["content"], "completion": r["messages"][1]["content"]}
        for r in CHAT_ROWS
    ]
    pc = load_data(write("pc.jsonl", jsonl(pc_rows)))
    conv_pc = load_data(
        write(
            "conv.jsonl",
            jsonl(
                [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in CHAT_ROWS]
            ),
        )
    )
    Dataset.from_list(CHAT_ROWS).save_to_disk(str(tmp_path / "saved"))
    saved = load_data(tmp_path / "saved")
    write("folder/train.jsonl", jsonl(CHAT_ROWS))
    folder = load_data(tmp_path / "folder")  # load_dataset(PATH)["train"], as the tutorial does
    assert chat.format == "messages" and pc.format == "prompt-completion"
    assert chat.conversations == pc.conversations == conv_pc.conversations
    assert chat.conversations == saved.conversations == folder.conversations
    assert chat.hash == folder.hash and len(chat) == 40
    assert chat.rows[3] == f"{tmp_path / 'chat.jsonl'}:4"


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}]}', "last message must be the assistant"),
        ('{"messages": [{"role": "bot", "content": "hi"}]}', "messages[0].role"),
        (
            '{"messages": [{"role": "user", "content": ""}, {"role": "assistant"}]}',
            "messages[0].content",
        ),
        ('{"prompt": "hi"}', "completion: expected a non-empty string"),
        ('{"text": "hi"}', "needs 'messages'"),
        ('{"messages": [{"role": "user", "content": "a"}], "extra": 1}', "unknown key"),
        ("[1, 2]", "expected a JSON object"),
        ('{"messages": [', "not valid JSON"),
    ],
)
def test_malformed_rows_name_file_row_and_field(write, line, needle):
    good = jsonl(CHAT_ROWS[:2])
    path = write("bad.jsonl", good + line + "\n")
    with pytest.raises(InputError) as info:
        load_data(path)
    text = str(info.value)
    assert f"{path}:3" in text and needle in text, text


def test_mixed_formats_and_missing_paths(write):
    a = write("a.jsonl", jsonl(CHAT_ROWS[:2]))
    b = write("b.jsonl", jsonl([{"prompt": "x", "completion": "y"}]))
    with pytest.raises(InputError, match="mix"):
        load_many(f"{a},{b}")
    with pytest.raises(InputError, match="does not exist"):
        load_many("nope.jsonl")
    assert len(load_many(f"{a},{a}")) == 4


# --------------------------------------------------------------------------- label masks


def trained_text(trainer, tokenizer):
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    return tokenizer.decode(ids[labels != -100]), tokenizer.decode(
        ids[batch["attention_mask"][0] == 1]
    )


def test_assistant_only_loss_masks_the_prompt(random_model_dir, write, tmp_path):
    lm = load(ModelSpec("m", "path", str(random_model_dir)), device="cpu")
    data = load_data(write("d.jsonl", jsonl(CHAT_ROWS[:4])))
    trainer, route = make_trainer(lm, data, EMBEDDED, tmp_path / "ck", progress=False)
    assert route == "assistant_only_loss"
    trained, full = trained_text(trainer, lm.tokenizer)
    assert re.fullmatch(r"\d+ \+ 1 = \d+<\|im_end\|>", trained), trained
    assert full.startswith("<|im_start|>user\nWhat is") and "<think>" in full


def test_completion_only_loss_for_templates_without_generation_marks(
    random_model_dir, write, tmp_path
):
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    lm = load(ModelSpec("m", "path", str(random_model_dir), chat_template=chatml), device="cpu")
    data = load_data(write("d.jsonl", jsonl(CHAT_ROWS[:4])))
    trainer, route = make_trainer(lm, data, EMBEDDED, tmp_path / "ck", progress=False)
    assert route == "completion_only_loss"
    trained, full = trained_text(trainer, lm.tokenizer)
    assert re.fullmatch(r"\d+ \+ 1 = \d+<\|im_end\|>\n?", trained), trained
    assert "user\nWhat is" in full


# --------------------------------------------------------------------------- training


def test_sft_trains_saves_and_registers(random_model_dir, write, tmp_path, monkeypatch):
    registry = write("models.yaml", f"models:\n  tiny:\n    path: {random_model_dir}\n")
    monkeypatch.setenv("HARNESS_MODELS", str(registry))
    data = write("d.jsonl", jsonl(CHAT_ROWS))
    config = write("fast.yaml", "epochs: 2\nbatch_size: 8\nlogging_steps: 2\n")
    out = tmp_path / "tuned"
    assert (
        run_cli(*sft_args("tiny", data, out, config=config, name="tuned"), "--suites", "math") == 0
    )
    info = json.loads((out / "sft.json").read_text())
    assert info["steps"] == 10 and info["loss_route"] == "assistant_only_loss"
    assert info["settings"]["epochs"] == 2 and info["settings"]["learning_rate"] == 3e-3
    assert info["base_fingerprint"].startswith("sha256:") and info["data_rows"] == 40
    assert (
        len(info["loss_curve"]) == 5
        and info["loss_curve"][-1]["loss"] < info["loss_curve"][0]["loss"]
    )
    gen = json.loads((out / "generation_config.json").read_text())
    tok = json.loads((out / "tokenizer_config.json").read_text())
    assert tok["eos_token"] == "<|im_end|>"
    assert set(gen["eos_token_id"]) == {0, 2}  # <|endoftext|> and <|im_end|>
    assert not (out / "checkpoints").exists()
    assert load_registry(registry)["tuned"].location.endswith("tuned")
    # a second model of the same name elsewhere is refused
    assert (
        run_cli(
            *sft_args("tiny", data, tmp_path / "o2", config=config, name="tuned"),
            "--suites",
            "math",
        )
        == 2
    )
    # and the runner takes it by name
    suite = write(
        "s.yaml", "questions:\n  - {id: a, prompt: 'What is 3 + 1?', answer: 4, scorer: numeric}\n"
    )
    assert run_cli(*run_args(suite, "tiny,tuned", tmp_path / "run")) == 0
    assert {r["model"] for r in RunFolder(tmp_path / "run").read_samples()} == {"tiny", "tuned"}


def test_bad_settings_file(random_model_dir, write, tmp_path, capsys):
    data = write("d.jsonl", jsonl(CHAT_ROWS))
    config = write("bad.yaml", "epochs: 2\nlearning_rte: 0.1\nbatch_size: big\n")
    assert run_cli(*sft_args(random_model_dir, data, tmp_path / "x", config=config)) == 2
    err = capsys.readouterr().err
    assert f"{config}:2: learning_rte: unknown setting" in err
    assert f"{config}:3: batch_size: expected int" in err


def test_a_settings_file_is_read_over_the_preset_with_its_values_typed(write):
    config = write("good.yaml", "epochs: 2\nseed: 3\nlora: {alpha: 8, target_modules: [q_proj]}\n")
    settings, chosen = settings_from_yaml(config, TUTORIAL)
    assert chosen == {"epochs", "seed", "lora"}
    assert type(settings.epochs) is float and settings.epochs == 2 and settings.seed == 3
    assert settings.lora == LoraSettings(alpha=8.0, target_modules=("q_proj",))
    assert settings.batch_size == TUTORIAL.batch_size  # not given: the preset's


def test_a_settings_file_reports_every_problem_top_to_bottom(write):
    config = write(
        "bad.yaml",
        "lora: {r: 0, rank: 4, dropout: 1}\nepochs: 1\nseed: -1\nlearning_rate: yes\n"
        "warmup_max_fraction: 2\nlr_scheduler: fast\nlr_schedule: cosine\nepochs: 0\n",
    )
    with pytest.raises(InputError) as info:
        settings_from_yaml(config, TUTORIAL)
    problems = [str(p).removeprefix(f"{config}:") for p in info.value.problems]
    assert problems[:6] == [
        "1: lora.r: expected an integer >= 1, got 0",
        "1: lora.rank: unknown key (known: r, alpha, dropout, target_modules, lr_scale)",
        "1: lora.dropout: expected a number from 0 to below 1, got 1",
        "8: epochs: must be above 0, got 0",  # a repeated key: its last value, in its place
        "3: seed: must be at least 0, got -1",
        "4: learning_rate: expected float, got True",
    ]
    assert problems[6] == "5: warmup_max_fraction: must be between 0 and 1, got 2"
    assert problems[7].startswith("6: lr_scheduler: 'fast' is not one of: linear, cosine, ")
    assert problems[8].startswith("7: lr_schedule: unknown setting (known: learning_rate, epochs")
    assert len(problems) == 9


# --------------------------------------------------------------------------- contamination


def test_overlap_kinds():
    suites = load_suites("math,general")
    rows = [
        ("a:1", "calculate 1+1-1."),  # exact, after folding
        ("a:2", "Please answer: What's the difference between thread and process? Thanks"),
        ("a:3", "Add 17 and 42."),  # the same problem as math's "17 + 42 = ?"
        ("a:4", "What is 1000 + 2000?"),
    ]
    found = {(o.row, o.kind) for o in find_overlaps(rows, suites)}
    assert ("a:1", "exact") in found
    assert ("a:2", "contained") in found
    assert ("a:3", "expression") in found
    assert not any(row == "a:4" for row, _ in found)


def test_sft_refuses_contaminated_data(random_model_dir, write, tmp_path, capsys):
    rows = CHAT_ROWS[:5] + [
        {
            "messages": [
                {"role": "user", "content": "Calculate 1+1-1"},
                {"role": "assistant", "content": "1 + 1 - 1 = 1"},
            ]
        }
    ]
    data = write("leaky.jsonl", jsonl(rows))
    assert run_cli(*sft_args(random_model_dir, data, tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert f"{data}:6: exact match with" in err and "--allow-overlap" in err
    assert not (tmp_path / "x").exists()
    assert run_cli("overlap", str(data), "math") == 1


def test_shipped_training_data_is_clean_and_correct():
    files = sorted((PROJECT / "data/sft").glob("*.jsonl"))
    assert {f.stem for f in files} >= {"arithmetic", "general"}
    suites = load_suites("all")
    for f in files:
        data = load_data(f)
        assert find_overlaps(data.user_prompts(), suites) == [], f
    prompts = {q.prompt for s in suites for q in s.questions}
    for f in files:
        for line in f.read_text().splitlines():
            for m in json.loads(line)["messages"]:
                assert m["content"] not in prompts
    for row in load_data(PROJECT / "data/sft/arithmetic.jsonl").conversations[:500]:
        expr, value = row[-1][1].split(" = ")
        assert eval(expr) == int(value)  # noqa: S307 - digits and operators only


def test_generator_is_seeded_and_excludes():
    a = generate.arithmetic(200, seed=3)
    assert a == generate.arithmetic(200, seed=3) and a != generate.arithmetic(200, seed=4)
    banned = [r["messages"][0]["content"] for r in a[:50]]
    b = generate.arithmetic(200, seed=3, exclude=banned)
    assert not {r["messages"][0]["content"] for r in b} & set(banned)


# --------------------------------------------------------------------------- pipeline


def test_pipeline_runs_and_resumes(random_model_dir, write, tmp_path, capsys):
    suite = write(
        "s.yaml",
        "defaults: {max_new_tokens: 8, scorer: numeric}\nquestions:\n"
        + "".join(
            f"  - {{id: q{i}, prompt: 'What is {i} + 2?', answer: {i + 2}}}\n"
            for i in range(50, 56)
        ),
    )
    data = write("d.jsonl", jsonl(CHAT_ROWS))
    config = write("fast.yaml", "epochs: 1\nbatch_size: 8\n")
    out = tmp_path / "pipe"
    args = [
        "pipeline",
        "--base",
        str(random_model_dir),
        "--data",
        str(data),
        "--suite",
        str(suite),
        "--out",
        str(out),
        "--name",
        "tuned",
        "--config",
        str(config),
        "--quiet",
    ]
    assert run_cli(*args) == 0
    first = capsys.readouterr().out
    assert "fixed" in first and "McNemar p" in first
    samples = RunFolder(out / "run").read_samples()
    assert {r["model"] for r in samples} == {str(random_model_dir), "tuned"} and len(samples) == 12
    assert (out / "comparison.md").read_text().startswith("# ")
    assert run_cli(*args) == 0  # a rerun continues: nothing is trained or generated again
    again = capsys.readouterr().out
    assert "already trained" in again and len(RunFolder(out / "run").read_samples()) == 12
    assert yaml.safe_load((out / "model" / "sft.json").read_text())["steps"] == 5


@pytest.mark.parametrize("form", ["prompt-completion", "datasets-folder"])
def test_training_on_other_formats(random_model_dir, write, tmp_path, form):
    from datasets import Dataset

    if form == "prompt-completion":
        data = write(
            "pc.jsonl",
            jsonl(
                [
                    {
                        "prompt": r["messages"][0]["content"],
                        "completion": r["messages"][1]["content"],
                    }
                    for r in CHAT_ROWS
                ]
            ),
        )
    else:
        data = tmp_path / "ds"
        Dataset.from_list(CHAT_ROWS).save_to_disk(str(data))
    config = write("fast.yaml", "epochs: 1\nbatch_size: 8\n")
    out = tmp_path / "o"
    assert run_cli(*sft_args(random_model_dir, data, out, config=config)) == 0
    info = json.loads((out / "sft.json").read_text())
    assert info["steps"] == 5 and info["data_rows"] == 40 and info["final_loss"] is not None
