"""End to end: `harness run` on tiny real models, resumes, and refuses to mix runs."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.results import RunFolder

from .conftest import run_args, run_cli

SUITE = """name: mini
defaults:
  max_new_tokens: 12
  scorer: numeric
questions:
""" + "".join(
    f"  - {{id: q{i}, prompt: 'What is {i} + {i % 4}?', answer: {i + i % 4}, "
    f"tags: [{'small' if i < 5 else 'big'}]}}\n"
    for i in range(10)
)


def outputs(folder):
    rows = RunFolder(folder).read_samples()
    return sorted((r["model"], r["suite"], r["id"], r["output"], r["finish_reason"]) for r in rows)


@pytest.fixture
def suite_file(write):
    return write("mini.yaml", SUITE)


def test_run_writes_the_three_files(suite_file, chat_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli(*run_args(suite_file, chat_model_dir, out, "--batch-size", "4"))
    assert code == 0
    printed = capsys.readouterr().out
    assert "accuracy [95% CI]" in printed and "mini" in printed
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["suites"]["mini"]["questions"] == 10 and len(run["suites"]["mini"]["hash"]) == 16
    model = run["models"][str(chat_model_dir)]
    assert model["fingerprint"].startswith("sha256:") and model["class"] == "Qwen3ForCausalLM"
    assert run["decode"]["strategy"] == "greedy" and run["versions"]["transformers"]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 10
    for r in rows:
        assert {
            "model",
            "suite",
            "id",
            "question",
            "prompt",
            "output",
            "finish_reason",
            "new_tokens",
            "correct",
            "score",
            "detail",
            "repetition",
        } <= r.keys()
        assert r["prompt"].startswith("<|im_start|>user\n" + r["question"])
        assert r["finish_reason"] == "eos"  # the chat-trained model stops
        assert r["correct"] == (r["detail"]["extracted"] == r["answer"])
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["models"][str(chat_model_dir)]["mini"]
    assert entry["n"] == 10 and entry["no_stop_rate"] == 0.0
    assert entry["accuracy"] == sum(r["correct"] for r in rows) / 10
    lo, hi = entry["ci95"]
    assert lo <= entry["accuracy"] <= hi
    assert set(entry["by_tag"]) == {"small", "big"} and entry["by_tag"]["small"]["n"] == 5


def test_two_runs_give_identical_samples(suite_file, random_model_dir, tmp_path):
    for name in ("a", "b"):
        assert run_cli(*run_args(suite_file, random_model_dir, tmp_path / name)) == 0
    a = (tmp_path / "a/samples.jsonl").read_text()
    assert a == (tmp_path / "b/samples.jsonl").read_text()


def test_resume_after_a_torn_write_equals_a_full_run(suite_file, random_model_dir, tmp_path):
    args = [
        "--suite",
        str(suite_file),
        "--models",
        str(random_model_dir),
        "--quiet",
        "--batch-size",
        "3",
    ]
    full = tmp_path / "full"
    assert run_cli("run", *args, "--out", str(full)) == 0
    lines = (full / "samples.jsonl").read_text().splitlines(keepends=True)
    for keep in (0, 2, 4, 7):
        part = tmp_path / f"part{keep}"
        part.mkdir()
        run = json.loads((full / "run.json").read_text())
        run["status"] = "running"
        (part / "run.json").write_text(json.dumps(run))
        torn = lines[keep][: len(lines[keep]) // 2]  # killed in the middle of a write
        (part / "samples.jsonl").write_text("".join(lines[:keep]) + torn)
        assert run_cli("run", *args, "--out", str(part), "--resume") == 0
        assert outputs(part) == outputs(full)
        assert len((part / "samples.jsonl").read_text().splitlines()) == 10
        assert json.loads((part / "run.json").read_text())["status"] == "complete"


def test_existing_folder_and_changed_inputs_are_refused(
    suite_file, random_model_dir, tmp_path, capsys, write
):
    out = tmp_path / "run"
    args = [
        "run",
        "--suite",
        str(suite_file),
        "--models",
        str(random_model_dir),
        "--quiet",
        "--out",
        str(out),
    ]
    assert run_cli(*args) == 0
    assert run_cli(*args) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert run_cli(*args, "--resume", "--max-new-tokens", "5") == 2
    assert "decode settings changed" in capsys.readouterr().err
    suite_file.write_text(SUITE.replace("answer: 2,", "answer: 99,"))
    assert run_cli(*args, "--resume") == 2
    assert "suites changed" in capsys.readouterr().err


def test_limit_and_bad_values(suite_file, random_model_dir, tmp_path, capsys):
    out = tmp_path / "lim"
    assert run_cli(*run_args(suite_file, random_model_dir, out, "--limit", "3")) == 0
    assert len(RunFolder(out).read_samples()) == 3
    assert run_cli("run", "--suite", "nope", "--models", "base", "--quiet") == 2
    assert "no suite named 'nope'" in capsys.readouterr().err
    assert run_cli("run", "--suite", str(suite_file), "--models", "no-such-model") == 2
    assert "not in models.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", "--suite", "math", "--batch-size", "0"])
    assert info.value.code == 2


def test_rescoring_uses_the_current_suite_and_records_its_hash(
    suite_file, random_model_dir, tmp_path
):
    out = tmp_path / "run"
    assert run_cli(*run_args(suite_file, random_model_dir, out, "--limit", "3")) == 0
    before = json.loads((out / "run.json").read_text())["suites"]["mini"]["hash"]
    suite_file.write_text(SUITE.replace("scorer: numeric", "scorer: stops"))
    assert run_cli("score", str(out)) == 0
    rows = RunFolder(out).read_samples()
    assert all(r["scorer"] == [{"type": "stops"}] for r in rows)
    assert all(r["correct"] == (r["finish_reason"] in ("eos", "stop")) for r in rows)
    after = json.loads((out / "run.json").read_text())["suites"]["mini"]["hash"]
    assert after != before
    suite_file.write_text(SUITE.replace("What is", "What's"))
    assert run_cli("score", str(out)) == 2  # a changed prompt needs a new run


def test_batch_invariant_decoders_share_batches_across_suites(
    suite_file, write, chat_model_dir, tmp_path, monkeypatch, capsys
):
    """One decode for all suites gives each suite the outputs it gets alone, and resumes."""
    import harness.evaluation as evaluation
    from harness.runner import DecoderChoice

    other = write("mini2.yaml", SUITE.replace("name: mini", "name: mini2").replace("+", "-"))
    alone = []
    for suite in (suite_file, other):
        assert run_cli(*run_args(suite, chat_model_dir, tmp_path / suite.stem)) == 0
        alone += outputs(tmp_path / suite.stem)
    # hf in float32 on CPU gives the same outputs in any batch: stands in for the invariant one
    monkeypatch.setattr(
        evaluation, "choose_decoder", lambda lm, requested: DecoderChoice("hf", True)
    )
    capsys.readouterr()
    shared = tmp_path / "shared"
    assert run_cli(*run_args(f"{suite_file},{other}", chat_model_dir, shared)) == 0
    printed = capsys.readouterr()
    assert "mini, mini2: 20 samples" in printed.out + printed.err
    assert outputs(shared) == sorted(alone)
    # a resume after losing part of one suite decodes only what is missing, under its own id
    folder = RunFolder(shared)
    rows = folder.read_samples()
    folder.rewrite_samples([r for r in rows if not (r["suite"] == "mini2" and r["id"] == "q3")])
    assert run_cli(*run_args(f"{suite_file},{other}", chat_model_dir, shared, "--resume")) == 0
    assert outputs(shared) == sorted(alone)


def test_shared_reads_parse_only_what_was_appended_and_follow_rewrites(tmp_path):
    folder = RunFolder(tmp_path / "r")
    row = {"model": "m", "suite": "s", "id": "a", "output": "1"}
    folder.append_samples([row])
    assert folder.read_samples(shared=True) == [row]
    folder.append_samples([{**row, "id": "b"}])
    with folder.samples.open("a") as fh:  # a torn last line is not read, and not remembered
        fh.write('{"model": "m", "suite"')
    assert [r["id"] for r in folder.read_samples(shared=True)] == ["a", "b"]
    folder.repair()
    folder.append_samples([{**row, "id": "c"}])
    assert [r["id"] for r in folder.read_samples(shared=True)] == ["a", "b", "c"]
    folder.rewrite_samples([{**row, "output": "2"}])
    assert folder.read_samples(shared=True) == [{**row, "output": "2"}]
    fresh = folder.read_samples()  # unshared reads are the caller's to change
    fresh[0]["output"] = "changed"
    assert folder.read_samples(shared=True)[0]["output"] == "2"
