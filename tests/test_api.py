"""harness as a library: the Python API over the same stages the command line runs."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import harness
from harness.errors import InputError, RunExists
from harness.sample import Sample

from .conftest import PROJECT, run_cli


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> harness.Run:
    return harness.evaluate(
        "math", ["base", "sft"], tmp_path_factory.mktemp("api") / "run", limit=12, progress=False
    )


def test_evaluate_returns_the_run_it_wrote(run):
    assert run.models == ["base", "sft"] and run.suites == ["math"] and len(run.samples) == 24
    assert all(isinstance(s, Sample) for s in run.samples)
    assert (run.path / "report.html").is_file() and run.info["status"] == "complete"
    assert (
        run.summary["models"]["sft"]["math"]["accuracy"]
        > 0.5
        > run.summary["models"]["base"]["math"]["accuracy"]
    )
    assert repr(run).startswith(f"Run('{run.path}': base, sft on math, 24 samples")
    assert harness.load_run(run.path).samples == run.samples


def test_samples_df_round_trips_every_field(run):
    df = run.samples_df()
    assert len(df) == 24 and {"repeated", "no_stop", "seq_rep_4"} <= set(df.columns)
    back = [Sample.from_dict(row) for row in df.to_dict("records")]
    assert back == run.samples
    sft = df[df.model == "sft"]
    assert sft.no_stop.sum() == 0 and df[df.model == "base"].no_stop.all()


def test_summary_df_has_a_row_per_model_suite_and_tag(run):
    df = run.summary_df()
    whole = df[(df.model == "sft") & (df.tag == "")].iloc[0]
    entry = run.summary["models"]["sft"]["math"]
    assert whole.n == 12 and whole.accuracy == entry["accuracy"]
    assert (whole.ci95_low, whole.ci95_high) == tuple(entry["ci95"])
    assert set(df[df.tag != ""].tag) == set(entry["by_tag"]) | set(
        run.summary["models"]["base"]["math"]["by_tag"]
    )


def test_compare_is_the_paired_comparison(run):
    (p,) = run.compare("base", "sft")
    assert (p.suite, p.n, p.broken) == ("math", 12, 0) and p.fixed > 6 and p.p_value < 0.05
    with pytest.raises(InputError, match="model: the run has no model 'nope'"):
        run.compare("base", "nope")


def test_a_model_in_memory_equals_the_same_model_from_its_folder(run):
    folder = PROJECT / "models/sft"
    model = AutoModelForCausalLM.from_pretrained(folder).train()
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="right")
    template = tokenizer.chat_template
    mine = harness.evaluate("math", {"mine": (model, tokenizer)}, limit=12, progress=False)
    assert [s.output for s in mine.samples] == [s.output for s in run.samples if s.model == "sft"]
    assert [s.correct for s in mine.samples] == [s.correct for s in run.samples if s.model == "sft"]
    info = mine.info["models"]["mine"]
    assert info["source"] == "memory" and info["fingerprint"].startswith("sha256:")
    # handed back as it came: training mode, the caller's tokenizer untouched
    assert (
        model.training and tokenizer.padding_side == "right" and tokenizer.chat_template == template
    )
    # the same weights, the same fingerprint; another weight, another
    again = harness.evaluate("math", (model, tokenizer), limit=1, progress=False, self_check=0)
    assert again.info["models"]["model"]["fingerprint"] == info["fingerprint"]


def test_rerunning_a_cell_resumes_and_refusing_says_so(run, tmp_path):
    again = harness.evaluate("math", ["base", "sft"], run.path, limit=12, progress=False)
    assert again.samples == run.samples
    with pytest.raises(RunExists, match=r"resume it \(resume=True\)"):
        harness.evaluate("math", "base", run.path, limit=12, resume=False, progress=False)
    with pytest.raises(InputError, match="decode settings changed"):
        harness.evaluate("math", ["base", "sft"], run.path, limit=5, progress=False)
    first = harness.evaluate("math", "base", limit=2, progress=False, self_check=0)
    second = harness.evaluate("math", "base", limit=2, progress=False, self_check=0)
    assert first.path != second.path and first.path.name.startswith("harness-run-")


def test_bad_arguments_name_the_parameter_not_a_flag(tmp_path):
    with pytest.raises(InputError, match=r"^suites: no suite named 'nope'"):
        harness.evaluate("nope", "base")
    with pytest.raises(InputError, match=r"^models: 'no-such' is not in models.yaml"):
        harness.evaluate("math", "no-such")
    with pytest.raises(InputError, match=r"^models: two models share the name base"):
        harness.evaluate("math", ["base", "base"])
    with pytest.raises(InputError, match=r"expected a transformers causal language model"):
        harness.evaluate("math", {"x": (object(), object())})
    out = tmp_path / "run"
    bad = {  # what the command line's choices refuse, refused before any folder or model
        "decoder": ("invariantt", r"^decoder: expected one of auto, invariant, static, hf"),
        "dtype": ("fp16", r"^dtype: expected one of auto, float32, bfloat16, float16"),
        "device": ("gpu", r"^device: expected auto, cpu, cuda or cuda:N, got 'gpu'"),
        "limit": (0, r"^limit: expected a positive integer or None, got 0"),
        "batch_size": (2.5, r"^batch_size: expected a positive integer or None, got 2.5"),
        "self_check": (-1, r"^self_check: expected 0 or a positive integer, got -1"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(InputError, match=message):
            harness.evaluate("math", "base", out, **{name: value})
    assert not out.exists()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match=r"^device: cuda:1: no CUDA device is available"):
            harness.evaluate("math", "base", tmp_path / "cuda", device="cuda:1")
    with pytest.raises(InputError, match=r"<suite s>: questions\[0\]\.answer: missing"):
        harness.Suite.from_dict(
            {"name": "s", "questions": [{"id": "a", "prompt": "p", "scorer": "numeric"}]}
        )


def test_export_writes_what_spreadsheets_read(run, tmp_path):
    csv = pd.read_csv(run.export(tmp_path / "s.csv"))
    parquet = pd.read_parquet(run.export(tmp_path / "s.parquet"))
    lines = run.export(tmp_path / "s.jsonl").read_text().splitlines()
    assert len(csv) == len(parquet) == len(lines) == 24
    assert list(csv.id) == [s.id for s in run.samples] == list(parquet.id)
    assert json.loads(csv.repetition[0]) == run.samples[0].repetition
    assert [Sample.from_dict(json.loads(x)) for x in lines] == run.samples
    summary = pd.read_csv(run.export(tmp_path / "summary.csv", what="summary"))
    assert len(summary) == len(run.summary_df())
    with pytest.raises(InputError, match="format: expected one of csv, parquet, jsonl"):
        run.export(tmp_path / "s.xlsx")
    assert run_cli("export", str(run.path), "--format", "parquet", "--what", "summary") == 0
    assert len(pd.read_parquet(run.path / "summary.parquet")) == len(summary)


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (PROJECT / "README.md").read_text()
    section = readme[readme.index("## Use from Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copytree(PROJECT / "reports/baseline", tmp_path / "reports/baseline")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md (Use from Python)", "exec"), scope)
    assert scope["result"].passed
    assert (scope["run"].path / "samples.parquet").is_file()
