"""Kill it anywhere, run it again, lose nothing: `harness run` and `harness sft` under SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from harness.results import RunFolder

from .conftest import chat_rows, jsonl, run_args, run_cli, sft_args

SUITE = "defaults: {max_new_tokens: 6, scorer: numeric}\nquestions:\n" + "".join(
    f"  - {{id: q{i:02d}, prompt: 'What is {i} + {i % 5}?', answer: {i + i % 5}}}\n"
    for i in range(14)
)


def outputs(folder):
    rows = RunFolder(folder).read_samples()
    return sorted(
        (r["model"], r["suite"], r["id"], r["output"], r["finish_reason"], r["correct"])
        for r in rows
    )


def test_sigkill_at_random_points_then_resume(write, random_model_dir, chat_model_dir, tmp_path):
    suite = write("s.yaml", SUITE)
    models = f"{random_model_dir},{chat_model_dir}"
    common = ["--suite", str(suite), "--models", models, "--quiet", "--batch-size", "2"]
    full = tmp_path / "full"
    assert run_cli("run", *common, "--out", str(full)) == 0
    expected = outputs(full)
    assert len(expected) == 28
    rng = random.Random(2026)
    landed = []
    for attempt in range(10):
        out = tmp_path / f"killed{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", *common, "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = rng.randint(0, 27)  # samples on disk when the kill lands (roughly)
        samples = out / "samples.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            lines = samples.read_bytes().count(b"\n") if samples.exists() else 0
            if lines >= target and (target > 0 or (out / "run.json").exists()):
                break
            time.sleep(0.002)
        time.sleep(rng.random() * 0.05)  # anywhere, including mid-write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        landed.append(samples.read_bytes().count(b"\n") if samples.exists() else 0)
        if not (out / "run.json").exists():  # killed before the run folder existed
            assert run_cli("run", *common, "--out", str(out)) == 0
        else:
            assert run_cli("run", *common, "--out", str(out), "--resume") == 0
        assert outputs(out) == expected, f"attempt {attempt}, killed at {landed[-1]} samples"
        assert len(RunFolder(out).read_samples()) == 28  # nothing lost, nothing twice
        assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert len(set(landed)) >= 4, f"kills should land at varied points, got {landed}"


def test_sft_resumes_from_its_last_checkpoint(write, random_model_dir, tmp_path):
    data = write("d.jsonl", jsonl(chat_rows(64)))
    config = write("c.yaml", "epochs: 3\nbatch_size: 8\nsave_steps: 4\nlogging_steps: 4\n")
    out = tmp_path / "tuned"
    cmd = [
        sys.executable,
        "-m",
        "harness",
        *sft_args(random_model_dir, data, out, config=config),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpts = out / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in ckpts.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if any(int(p.name.split("-")[1]) >= 8 for p in done):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "sft.json").exists(), "the kill should land before training finished"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming from" in result.stdout
    info = json.loads((out / "sft.json").read_text())
    assert info["steps"] == 24 and info["resumed_from"].split("-")[-1] in {"8", "12", "16", "20"}
    assert not ckpts.exists()


BROKEN = [
    ("empty.yaml", ""),
    ("list.yaml", "- a\n- b\n"),
    ("tabs.yaml", "questions:\n\t- id: a\n"),
    ("unclosed.yaml", "questions: [\n"),
    ("no-questions.yaml", "name: x\n"),
    ("empty-questions.yaml", "questions: []\n"),
    ("question-not-mapping.yaml", "questions:\n  - just a string\n"),
    ("no-id.yaml", "questions:\n  - {prompt: p, scorer: stops}\n"),
    ("no-prompt.yaml", "questions:\n  - {id: a, scorer: stops}\n"),
    ("prompt-number.yaml", "questions:\n  - {id: a, prompt: 5, scorer: stops}\n"),
    (
        "dup-id.yaml",
        "questions:\n  - {id: a, prompt: p, scorer: stops}\n"
        "  - {id: a, prompt: q, scorer: stops}\n",
    ),
    ("unknown-scorer.yaml", "questions:\n  - {id: a, prompt: p, scorer: bleu}\n"),
    ("unknown-key.yaml", "questions:\n  - {id: a, prompt: p, scorer: stops, colour: red}\n"),
    ("no-scorer.yaml", "questions:\n  - {id: a, prompt: p}\n"),
    ("scorer-option.yaml", "questions:\n  - {id: a, prompt: p, scorer: {type: stops, x: 1}}\n"),
    ("missing-option.yaml", "questions:\n  - {id: a, prompt: p, scorer: {type: regex}}\n"),
    (
        "bad-option-type.yaml",
        "questions:\n  - {id: a, prompt: p, scorer: {type: max_words, limit: ten}}\n",
    ),
    ("no-answer.yaml", "questions:\n  - {id: a, prompt: p, scorer: numeric}\n"),
    ("answer-type.yaml", "questions:\n  - {id: a, prompt: p, scorer: numeric, answer: many}\n"),
    ("max-tokens.yaml", "questions:\n  - {id: a, prompt: p, scorer: stops, max_new_tokens: 0}\n"),
    ("bad-tags.yaml", "questions:\n  - {id: a, prompt: p, scorer: stops, tags: x}\n"),
    ("bad-defaults.yaml", "defaults: 3\nquestions:\n  - {id: a, prompt: p, scorer: stops}\n"),
]


@pytest.mark.parametrize(("name", "text"), BROKEN, ids=[n for n, _ in BROKEN])
def test_broken_suite_files_give_one_clear_line(name, text, tmp_path):
    path = tmp_path / name
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(str(path)) and "Traceback" not in result.stderr


def test_run_writes_nothing_outside_its_folder(write, random_model_dir, tmp_path, monkeypatch):
    suite = write("s.yaml", SUITE)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "out"
    assert run_cli(*run_args(suite, random_model_dir, out, "--limit", "2")) == 0
    after = {p for p in tmp_path.rglob("*")}
    assert {p for p in after - before if out not in p.parents and p != out} == set()
