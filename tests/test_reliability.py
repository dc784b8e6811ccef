"""Faults: out of memory mid-run, undecodable outputs, and random or mutated input files."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import runner
from harness.errors import InputError
from harness.evaluation import DecodeSettings, evaluate
from harness.models import ModelSpec
from harness.results import RunFolder
from harness.sft.data import load_data
from harness.suites import load_suite, parse_suite
from harness.yamlio import parse_yaml

SUITE = "questions:\n" + "".join(
    f"  - {{id: q{i}, prompt: 'What is {i} + 1?', answer: {i + 1}, scorer: numeric}}\n"
    for i in range(9)
)


def test_out_of_memory_halves_the_batch_and_changes_nothing(
    random_model_dir, write, tmp_path, monkeypatch
):
    suite = load_suite(write("s.yaml", SUITE))
    spec = ModelSpec("m", "path", str(random_model_dir))
    # self_check=0: the single-question decodes of the self-check would add to `sizes`
    settings_ = DecodeSettings(batch_size=8, max_new_tokens=6, device="cpu", self_check=0)
    evaluate([suite], [spec], tmp_path / "clean", settings_, log=lambda _: None, progress=False)
    real = runner.generate_batch
    sizes = []

    def flaky(lm, batch, decoder="auto"):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real(lm, batch, decoder)

    monkeypatch.setattr(runner, "generate_batch", flaky)
    evaluate([suite], [spec], tmp_path / "oom", settings_, log=lambda _: None, progress=False)
    strip = lambda rows: [(r["id"], r["output"], r["finish_reason"]) for r in rows]  # noqa: E731
    assert strip(RunFolder(tmp_path / "oom").read_samples()) == strip(
        RunFolder(tmp_path / "clean").read_samples()
    )
    assert sizes == [8, 4, 2, 2, 4, 2, 2, 1]  # halves until it fits, then the last batch
    events = json.loads((tmp_path / "oom" / "run.json").read_text())["events"]
    assert events[0]["event"] == "out_of_memory" and events[0]["batch"] == 8


def test_other_errors_are_not_swallowed(random_model_dir, write, tmp_path, monkeypatch):
    suite = load_suite(write("s.yaml", SUITE))

    def broken(lm, batch, decoder="auto"):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(runner, "generate_batch", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        evaluate(
            [suite],
            [ModelSpec("m", "path", str(random_model_dir))],
            tmp_path / "x",
            DecodeSettings(device="cpu"),
            log=lambda _: None,
            progress=False,
        )


def test_an_undecodable_output_is_an_error_on_that_sample(
    random_model_dir, write, tmp_path, monkeypatch
):
    suite = load_suite(write("s.yaml", SUITE))
    real = runner._finish

    def finish(lm, req, ids, n, margins=None):
        if req.id.endswith("q3"):  # the suite's name, then the question's id
            raise ValueError("invalid token id")
        return real(lm, req, ids, n, margins)

    monkeypatch.setattr(runner, "_finish", finish)
    summary = evaluate(
        [suite],
        [ModelSpec("m", "path", str(random_model_dir))],
        tmp_path / "r",
        DecodeSettings(device="cpu", max_new_tokens=4),
        log=lambda _: None,
        progress=False,
    )
    rows = {r["id"]: r for r in RunFolder(tmp_path / "r").read_samples()}
    assert rows["q3"]["finish_reason"] == "error" and "invalid token id" in rows["q3"]["error"]
    assert not rows["q3"]["correct"] and all(rows[f"q{i}"]["error"] is None for i in (0, 1, 2))
    assert summary["models"]["m"]["s"]["errors"] == 1


# --------------------------------------------------------------------------- fuzzed inputs

GOOD = """name: fuzz
defaults:
  scorer: numeric
questions:
  - id: a
    prompt: "What is 1 + 1?"
    answer: 2
  - id: b
    prompt: "Say hi"
    scorer: [stops, {type: max_words, limit: 3}]
"""


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_is_a_suite_or_a_clear_error(text):
    try:
        data = parse_yaml(text, "fuzz.yaml")
        parse_suite(data, "fuzz.yaml")
    except InputError as exc:
        assert str(exc).startswith("fuzz.yaml")


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 40), st.text(max_size=6))
def test_mutated_suites_are_a_suite_or_a_clear_error(at, cut, insert):
    text = GOOD[:at] + insert + GOOD[at + cut :]
    try:
        parse_suite(parse_yaml(text, "m.yaml"), "m.yaml")
    except InputError as exc:
        assert all(p.file == "m.yaml" for p in exc.problems) and exc.problems


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.just('{"messages": []}'),
            st.just('{"prompt": "a", "completion": "b"}'),
        ),
        max_size=5,
    )
)
def test_mutated_training_data_is_data_or_a_clear_error(tmp_path, lines):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        data = load_data(path)
        assert len(data) > 0
    except InputError as exc:
        assert str(path) in str(exc)
