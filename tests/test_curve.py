"""Evaluation during fine-tuning: curves over the steps, from the model in memory, without
changing the training; and the same kind of run folder from checkpoints on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import TrainerCallback

from harness.curves import read_curve
from harness.models import ModelSpec
from harness.results import RunFolder
from harness.sft import curve as curve_module
from harness.sft.curve import CurvePlan
from harness.sft.stage import run_sft
from harness.suites import load_suites

from .conftest import chat_rows, jsonl, run_args, run_cli

SUITE = "defaults: {max_new_tokens: 8, scorer: numeric}\nquestions:\n" + "".join(
    f"  - {{id: q{i}, prompt: 'What is {i} + 1?', answer: {i + 1}}}\n" for i in range(100, 106)
)


def outputs(folder: Path, model: str) -> dict[tuple[str, str], tuple]:
    return {
        (r["suite"], r["id"]): (r["output"], r["finish_reason"], r["new_tokens"])
        for r in RunFolder(folder).read_samples()
        if r["model"] == model
    }


def test_the_embedded_pair_tells_the_story_on_cpu(tmp_path, monkeypatch):
    """Step 0 is the base as `harness run` sees it, the last point the saved result, and the
    accuracy rises in between: the curve `harness sft` exists to show."""
    monkeypatch.setenv("HARNESS_MODELS", str(tmp_path / "models.yaml"))
    out = tmp_path / "t"
    args = ["--eval-suites", "math,repetition", "--eval-points", "6", "--quiet"]
    data = "data/sft/arithmetic.jsonl"
    assert (
        run_cli("sft", "--model", "base", "--data", data, "--name", "t", "--out", str(out), *args)
        == 0
    )
    info = json.loads((out / "sft.json").read_text())
    curve_dir = out / "curve"
    points = info["curve"]["points"]
    assert len(points) == 6 and points[0] == 0 and points[-1] == info["steps"]
    assert 0 < info["curve"]["eval_share_of_training"] < 1
    assert run_cli(*run_args("math,repetition", "base", tmp_path / "base")) == 0
    assert run_cli(*run_args("math,repetition", "t", tmp_path / "final")) == 0
    assert outputs(curve_dir, "t@step-0") == outputs(tmp_path / "base", "base")
    assert outputs(curve_dir, f"t@step-{points[-1]}") == outputs(tmp_path / "final", "t")
    folder = RunFolder(curve_dir)
    run = folder.read_run()
    curve = read_curve(run, folder.read_samples())
    first, last = (curve.scores[m]["math"]["accuracy"] for m in (curve.models[0], curve.models[-1]))
    assert last > first and curve.first_change["math"] is not None
    training = run["models"][f"t@step-{points[2]}"]["training"]
    assert training["step"] == points[2] and training["loss"] > 0 and training["epoch"] > 0
    assert training["learning_rate"] > 0 and training["run"] == "t"
    assert len(run["training"]["loss_curve"]) > 10
    html = (curve_dir / "report.html").read_text()
    assert '<h2 id="curve">During training: t</h2>' in html and "Accuracy by step" in html
    assert "Training loss" in html and html.count('class="mark"') >= 2
    md = (curve_dir / "report.md").read_text()
    assert md.startswith("## harness: t during training (6 points)") and "p vs 0" in md
    # report, compare and gate take it unchanged
    pair = ["--model-a", f"t@step-{points[-1]}", "--model-b", "t"]
    assert run_cli("compare", str(curve_dir), str(tmp_path / "final"), *pair) == 0


def _train(model_dir: Path, data: Path, out: Path, suites, **plan) -> dict:
    config = out.parent / f"{out.name}.yaml"
    config.write_text("epochs: 1\nbatch_size: 8\nlogging_steps: 1\nsave_steps: 4\n")
    return run_sft(
        ModelSpec("tiny", "path", str(model_dir)),
        str(data),
        out,
        suites=suites,
        config=config,
        progress=False,
        log=lambda _: None,
        curve=CurvePlan(tuple(suites), **plan) if plan else None,
    )


def _train_killed_at(step: int, monkeypatch, *args, **plan) -> None:
    """`_train`, killed at the end of `step` (after that step's point)."""

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == step:
                raise KeyboardInterrupt(f"killed at step {step}")

    attach = curve_module.CurveCallback.attach
    with monkeypatch.context() as patched:
        patched.setattr(
            curve_module.CurveCallback,
            "attach",
            lambda self, trainer: (attach(self, trainer), trainer.add_callback(Crash())),
        )
        with pytest.raises(KeyboardInterrupt):
            _train(*args, **plan)


def test_evaluating_changes_nothing_in_the_training(random_model_dir, write, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suites = load_suites(str(write("s.yaml", SUITE)))
    plain = _train(random_model_dir, data, tmp_path / "plain", suites)
    watched = _train(random_model_dir, data, tmp_path / "watched", suites, every=2)
    assert watched["loss_curve"] == plain["loss_curve"] and len(plain["loss_curve"]) == 8
    a = (tmp_path / "plain" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "watched" / "model.safetensors").read_bytes()
    assert watched["curve"]["points"] == [0, 2, 4, 6, 8]
    samples = RunFolder(tmp_path / "watched" / "curve").read_samples()
    assert len(samples) == 5 * 6 and len({(r["model"], r["id"]) for r in samples}) == 30


def test_the_metrics_reach_the_trainers_loggers(random_model_dir, write, tmp_path, monkeypatch):
    seen: list[dict] = []

    class Spy(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            seen.append(dict(logs or {}))

    attach = curve_module.CurveCallback.attach
    monkeypatch.setattr(
        curve_module.CurveCallback,
        "attach",
        lambda self, trainer: (attach(self, trainer), trainer.add_callback(Spy())),
    )
    data = write("d.jsonl", jsonl(chat_rows(32)))
    suites = load_suites(str(write("s.yaml", SUITE)))
    _train(random_model_dir, data, tmp_path / "m", suites, points=3)
    evals = [e for e in seen if "eval/s/accuracy" in e]
    assert len(evals) == 3 and {"eval/s/repetition_rate", "eval/s/no_stop_rate"} <= set(evals[0])
    assert any("loss" in e for e in seen)  # the training's own logs still flow


def test_a_resumed_training_appends_to_its_curve(random_model_dir, write, tmp_path, monkeypatch):
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suites = load_suites(str(write("s.yaml", SUITE)))
    _train_killed_at(6, monkeypatch, random_model_dir, data, tmp_path / "m", suites, every=2)
    curve_dir = tmp_path / "m" / "curve"
    before = {r["model"] for r in RunFolder(curve_dir).read_samples()}
    assert before == {"m@step-0", "m@step-2", "m@step-4", "m@step-6"}
    info = _train(random_model_dir, data, tmp_path / "m", suites, every=2)
    assert info["resumed_from"].endswith("checkpoint-4")
    samples = RunFolder(curve_dir).read_samples()
    models = [r["model"] for r in samples]
    assert sorted(set(models)) == [f"m@step-{s}" for s in (0, 2, 4, 6, 8)]
    assert len(models) == 5 * 6  # nothing decoded twice


def test_keep_best_saves_the_best_point(random_model_dir, write, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suites = load_suites(str(write("s.yaml", SUITE)))
    info = _train(random_model_dir, data, tmp_path / "m", suites, every=4, keep="s")
    kept = info["kept"]
    assert kept["why"] == "best:s" and kept["step"] in info["curve"]["points"]
    assert (tmp_path / "m" / "best" / "model.safetensors").is_file()
    curve = read_curve(*_run_and_samples(tmp_path / "m" / "curve"))
    assert curve.best["s"] == kept["step"]


def _run_and_samples(folder: Path):
    f = RunFolder(folder)
    return f.read_run(), f.read_samples()


def test_bad_curve_requests_fail_before_training(random_model_dir, write, tmp_path, capsys):
    data = write("d.jsonl", jsonl(chat_rows(8)))
    base = ["sft", "--model", str(random_model_dir), "--data", str(data), "--no-register"]
    base += ["--out", str(tmp_path / "o"), "--quiet"]
    assert run_cli(*base, "--eval-suites", "nope") == 2
    assert "--suite: no suite named 'nope'" in capsys.readouterr().err
    assert run_cli(*base, "--eval-suites", "math", "--keep", "best:general") == 2
    assert "--keep: best:general: 'general' is not one of the evaluation suites" in (
        capsys.readouterr().err
    )
    assert run_cli(*base, "--eval-suites", "math", "--keep", "worst:math") == 2
    assert "--keep: expected best:SUITE" in capsys.readouterr().err
    assert run_cli(*base, "--eval-every", "5") == 2
    assert "--eval-suites: name the suites" in capsys.readouterr().err
    assert run_cli(*base, "--eval-suites", "math", "--eval-every", "2", "--eval-points", "3") == 2
    assert run_cli(*base, "--eval-suites", "math", "--eval-every", "0") == 2
    assert "--eval-every: expected a positive integer, got '0'" in capsys.readouterr().err
    # an evaluation suite that the training data contains is refused like any other
    turn = [{"role": "user", "content": "What is 100 + 1?"}, {"role": "assistant", "content": "1"}]
    leaky = write("leak.jsonl", jsonl([{"messages": turn}]))
    args = ["sft", "--model", str(random_model_dir), "--data", str(leaky), "--suites", "general"]
    args += ["--no-register", "--out", str(tmp_path / "l"), "--quiet"]
    assert run_cli(*args, "--eval-suites", str(write("s.yaml", SUITE))) == 2
    assert "contain evaluation questions of general, s" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "l").exists()


def test_checkpoints_on_disk_make_the_same_kind_of_run(random_model_dir, write, tmp_path):
    runs = tmp_path / "old-run"
    for step, loss in ((10, 1.5), (2, 2.5)):
        folder = runs / f"checkpoint-{step}"
        shutil.copytree(random_model_dir, folder)
        history = [{"step": step, "loss": loss, "learning_rate": 1e-3}]
        state = {"global_step": step, "epoch": step / 10, "log_history": history}
        (folder / "trainer_state.json").write_text(json.dumps(state))
    suite = write("s.yaml", SUITE)
    assert run_cli(*run_args(suite, f"{runs}/checkpoint-*", tmp_path / "r")) == 0
    folder = RunFolder(tmp_path / "r")
    run = folder.read_run()
    assert list(run["models"]) == ["old-run@step-2", "old-run@step-10"]  # by step, not by text
    assert run["models"]["old-run@step-10"]["training"]["loss"] == 1.5
    curve = read_curve(run, folder.read_samples())
    assert curve.steps == [2, 10] and curve.point_loss == {2: 2.5, 10: 1.5}
    assert "During training: old-run" in (tmp_path / "r" / "report.html").read_text()
    assert run_cli(*run_args(suite, f"{runs}/nothing-*", tmp_path / "x")) == 2


def test_the_pipeline_draws_the_curve_between_its_two_runs(random_model_dir, write, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(40)))
    config = write("c.yaml", "epochs: 1\nbatch_size: 8\n")
    out = tmp_path / "pipe"
    args = ["pipeline", "--base", str(random_model_dir), "--data", str(data), "--suite"]
    args += [str(write("s.yaml", SUITE)), "--out", str(out), "--name", "tuned"]
    args += ["--config", str(config), "--eval-points", "3", "--quiet"]
    assert run_cli(*args) == 0
    comparison = (out / "comparison.md").read_text()
    assert "## During training" in comparison and "p vs 0" in comparison
    points = json.loads((out / "model" / "sft.json").read_text())["curve"]["points"]
    assert points == [0, 2, 5] and (out / "model" / "curve" / "report.html").is_file()
    final = outputs(out / "run", "tuned")
    assert outputs(out / "model" / "curve", "tuned@step-5") == final


def test_a_resumed_training_keeps_the_best_and_the_points_of_before(
    random_model_dir, write, tmp_path, monkeypatch
):
    """Killed after its best point, a training resumed from an earlier checkpoint reports and
    keeps what the same training run at once does: the points and the best of before count."""
    data = write("d.jsonl", jsonl(chat_rows(64)))
    suites = load_suites(str(write("s.yaml", SUITE)))
    plan = {"every": 2, "keep": "s"}
    whole = _train(random_model_dir, data, tmp_path / "whole", suites, **plan)
    _train_killed_at(6, monkeypatch, random_model_dir, data, tmp_path / "m", suites, **plan)
    resumed = _train(random_model_dir, data, tmp_path / "m", suites, **plan)
    assert resumed["resumed_from"].endswith("checkpoint-4")
    assert resumed["curve"]["points"] == whole["curve"]["points"] == [0, 2, 4, 6, 8]
    assert resumed["kept"] == whole["kept"]
    kept = json.loads((tmp_path / "m" / "best" / "kept.json").read_text())
    assert kept["step"] == whole["kept"]["step"]
    weights = "best/model.safetensors"
    assert (tmp_path / "m" / weights).read_bytes() == (tmp_path / "whole" / weights).read_bytes()
