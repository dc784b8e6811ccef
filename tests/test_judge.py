"""The `judge` scorer: a model grades answers in its own batched greedy pass after generation.

The embedded `sft` is the judge here: these tests check the plumbing (what is recorded, that a
re-score reaches the same verdicts, what fails early), not the judge's wisdom.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.baseline import write_baseline
from harness.errors import InputError
from harness.results import RunFolder
from harness.scoring.judge import Judge
from harness.suites import load_suite, resolve_suites

from .conftest import PROJECT, run_args, run_cli

RUBRIC = "Question: {question}\nReference: {answer}\nAnswer: {output}\nIs the answer right?\n"
# the embedded sft, asked to grade, writes a sum or repeats the answer: the first word is the
# "grade" here, through a scale with partial credit; a "9" is outside it (an unreadable verdict)
PATTERN, SCALE = "grade_pattern: '^(\\d|The)'", "scale: {The: 1, '5': 0.5, '1': 0}"
JUDGE = f"{{type: judge, model: sft, rubric: rubric.txt, {PATTERN}, {SCALE}, max_new_tokens: 24}}"
SUITE = f"""name: judged
defaults:
  max_new_tokens: 24
  scorer: {JUDGE}
questions:
  - {{id: add, prompt: "What is 2 + 3?", answer: 5}}
  - {{id: sub, prompt: "What is 9 - 4?", answer: 5}}
  - {{id: intro, prompt: "Give me a 1-sentence introduction of LLM."}}
  - id: france
    prompt: "What is the capital of France?"
    answer: Paris
    scorer: [{{type: contains, text: Paris}}, {JUDGE}]
  - {{id: mul, prompt: "What is 3 * 3?", answer: 9}}
"""
# the verdicts the judge reaches on sft's answers: (grade or None, correct, score)
EXPECTED = {
    "add": ("5", False, 0.5),
    "sub": ("5", False, 0.5),
    "intro": ("1", False, 0.0),
    "france": ("The", True, 1.0),  # the keyword scorer and the judge both pass
    "mul": (None, False, 0.0),  # "9 * 9 = 81": no grade of the scale
}


def _suite(tmp_path: Path, text: str = SUITE) -> Path:
    (tmp_path / "rubric.txt").write_text(RUBRIC)
    path = tmp_path / "judged.yaml"
    path.write_text(text)
    return path


def _rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in RunFolder(out).read_samples()}


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("judged")
    out = root / "run"
    assert run_cli(*run_args(_suite(root), "sft", out, "--self-check", "0")) == 0
    return out


def test_judge_verdicts_are_recorded_with_the_judge_and_rubric(judged_run):
    rows = _rows(judged_run)
    for qid, (grade, correct, value) in EXPECTED.items():
        judged = rows[qid]["detail"]["judge"]
        assert judged["output"], qid  # the judge's own words are kept
        assert (judged["verdict"] if judged["parsed"] else None, rows[qid]["correct"]) == (
            grade,
            correct,
        ), qid
        assert rows[qid]["score"] == value, qid
    assert rows["france"]["detail"]["contains"] == {}  # both scorers' details, by name
    assert rows["mul"]["detail"]["judge"]["problem"].startswith("grade '9' is not in the scale")
    run = json.loads((judged_run / "run.json").read_text())
    (entry,) = run["judges"]["judged"]
    assert entry["model"] == "sft"
    assert entry["fingerprint"] == run["models"]["sft"]["fingerprint"]  # the same model judged
    assert entry["rubric_hash"] == "sha256:" + hashlib.sha256(RUBRIC.encode()).hexdigest()
    assert (entry["rubric_file"], entry["samples"], entry["dtype"]) == ("rubric.txt", 5, "float32")
    summary = json.loads((judged_run / "summary.json").read_text())["models"]["sft"]["judged"]
    assert (summary["judged"], summary["judge_unparsed"], summary["correct"]) == (5, 1, 1)
    html = (judged_run / "report.html").read_text()
    assert rows["intro"]["detail"]["judge"]["output"] in html  # the reasoning beside the answer
    assert 'id="judge-unparsed"' in html and "judge: unreadable" in html
    assert "Unreadable judge verdicts" in (judged_run / "report.md").read_text()


def test_rescoring_judges_again_to_the_same_verdicts(judged_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(judged_run, copy)
    before = _rows(copy)
    folder = RunFolder(copy)
    forgotten = folder.read_samples()
    for r in forgotten:  # forget the verdicts: only the outputs remain
        r["correct"], r["score"], r["detail"] = False, 0.0, None
    folder.rewrite_samples(forgotten)
    assert run_cli("score", str(copy), "--quiet") == 0
    after = _rows(copy)
    for qid in EXPECTED:
        for field in ("correct", "score", "detail", "output"):
            assert after[qid][field] == before[qid][field], (qid, field)
    run = json.loads((copy / "run.json").read_text())
    assert run["judges"] == json.loads((judged_run / "run.json").read_text())["judges"]


def test_an_unreadable_verdict_is_wrong_and_counted(tmp_path):
    text = SUITE.replace(PATTERN, "grade_pattern: 'GRADE: (C|I)'").replace(f"{SCALE}, ", "")
    out = tmp_path / "run"
    assert run_cli(*run_args(_suite(tmp_path, text), "sft", out, "--self-check", "0")) == 0
    rows = _rows(out)
    assert not any(r["correct"] for r in rows.values())
    assert all(r["detail"]["judge"]["parsed"] is False for r in rows.values())
    summary = json.loads((out / "summary.json").read_text())["models"]["sft"]["judged"]
    assert summary["judge_unparsed"] == summary["n"] == 5


def test_a_missing_judge_fails_before_any_generation(tmp_path, capsys):
    path = _suite(tmp_path, SUITE.replace("model: sft", "model: no-such-judge"))
    out = tmp_path / "run"
    assert run_cli(*run_args(path, "sft", out)) == 2
    err = capsys.readouterr().err
    assert "judge model 'no-such-judge' of suite judged" in err
    assert not (out / "samples.jsonl").exists() and not (out / "run.json").exists()


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (PATTERN, "grade_pattern: '(C|I'", "grade_pattern", "not a regular expression"),
        (PATTERN, "grade_pattern: 'GRADE: C'", "grade_pattern", "needs a group"),
        ("rubric: rubric.txt", "rubric: missing.txt", "rubric", "does not exist"),
        (SCALE, "scale: {C: 0.5, I: 0}", "scale", "no grade earns full credit"),
        (SCALE, "scale: {C: 1, I: -1}", "scale", "is not 0 to 1"),
    ],
)
def test_bad_judge_options_are_suite_errors(tmp_path, old, new, field, message):
    assert old in SUITE
    path = _suite(tmp_path, SUITE.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        load_suite(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (4, f"defaults.scorer.{field}")
    assert message in problem.message and f"{path}:4" in str(problem)


def test_one_judge_per_question(tmp_path):
    text = SUITE.replace("scorer: [{type: contains, text: Paris},", f"scorer: [{JUDGE},")
    with pytest.raises(InputError, match="at most one model-graded scorer"):
        load_suite(_suite(tmp_path, text))


def test_the_gate_refuses_runs_judged_differently(judged_run, tmp_path, capsys):
    write_baseline(judged_run, tmp_path / "baseline")
    assert run_cli("gate", "--baseline", str(tmp_path / "baseline"), str(judged_run)) == 0
    other = tmp_path / "other"
    shutil.copytree(judged_run, other)
    folder = RunFolder(other)
    run = folder.read_run()
    run["judges"]["judged"][0].update(model="bigger", fingerprint="sha256:" + "ab" * 32)
    folder.write_run(run)
    capsys.readouterr()
    assert run_cli("gate", "--baseline", str(tmp_path / "baseline"), str(other)) == 2
    err = capsys.readouterr().err
    assert "judged differently from the baseline" in err
    assert "judge sft" in err and "judge bigger abababababab" in err


def test_judge_reads_the_last_grade_and_fills_the_rubric():
    j = Judge(
        "sft",
        "Q {question} A {answer} O {output} {json: 1}",
        r"GRADE: (C|P|I)",
        {"C": 1, "P": 0.5, "I": 0},
    )
    assert j.prompt("why?", None, "because") == "Q why? A  O because {json: 1}"
    graded = j.verdict("Reply GRADE: C or GRADE: I. It is partly right. GRADE: P")
    assert (graded.correct, graded.value, graded.detail["verdict"]) == (False, 0.5, "P")
    assert j.verdict("", "error", "too long").detail["error"] == "too long"


def test_judged_suites_run_by_name_and_stay_out_of_all():
    every = {p.stem for p in resolve_suites("all")}
    assert "general-judged" not in every and {"general", "math", "repetition"} <= every
    (path,) = resolve_suites("general-judged")
    judged, general = load_suite(path), load_suite(PROJECT / "suites" / "general.yaml")
    assert [(q.id, q.prompt, q.answer) for q in judged.questions] == [
        (q.id, q.prompt, q.answer) for q in general.questions
    ]
    assert {s.type for q in judged.questions for s in q.scorers} == {"judge"}
    made = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / "make_judged_suite.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout == path.read_text()  # the shipped file is what its script prints
