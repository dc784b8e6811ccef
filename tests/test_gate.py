"""The CI gate: each exit code and each rule, on real runs of the shipped models."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness import gating
from harness.baseline import read_baseline, write_baseline
from harness.errors import InputError
from harness.gating import Fraction, SuitePair, Verdict, gate, load_rules
from harness.results import RunFolder

from .conftest import PROJECT, run_args, run_cli


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    out = root / "run"
    assert (
        run_cli("run", "--suite", "all", "--models", "base,sft", "--out", str(out), "--quiet") == 0
    )
    write_baseline(out, root / "baseline")
    return out, root / "baseline"


def mutated(run, tmp_path, change, model="sft", suite="math", count=1):
    """A copy of the run with `change(record)` applied to the first `count` matching samples."""
    copy = tmp_path / "mutated"
    shutil.copytree(run, copy)
    folder = RunFolder(copy)
    rows, done = folder.read_samples(), 0
    for r in rows:
        if r["model"] == model and r["suite"] == suite and done < count and change(r):
            done += 1
    assert done == count
    folder.rewrite_samples(rows)
    return copy


def break_one(r):
    if r["correct"]:
        r["correct"] = False
        return True
    return False


def test_same_model_passes_and_base_against_sft_fails(shipped_run, capsys):
    run, baseline = shipped_run
    assert run_cli("gate", "--baseline", str(baseline), str(run)) == 0
    assert "gate passed" in capsys.readouterr().out
    assert (
        run_cli(
            "gate",
            "--baseline",
            str(baseline),
            str(run),
            "--candidate",
            "base",
            "--baseline-model",
            "sft",
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "GATE FAILED" in out
    assert "base / math: max_accuracy_drop: accuracy 23.5% -> 0.0% (23.5 pts drop" in out
    assert "base / repetition: max_accuracy_drop" in out


def test_one_question_of_324_is_noise(shipped_run, tmp_path):
    run, baseline = shipped_run
    candidate = mutated(run, tmp_path, break_one)
    result = gate(read_baseline(baseline), candidate, load_rules(None))
    assert result.passed
    (drop,) = [
        c
        for c in result.checks
        if c.model == "sft" and c.suite == "math" and c.rule == "max_accuracy_drop"
    ]
    assert len(drop.broken) == 1 and "McNemar p=1" in drop.detail


def test_significant_drop_fails_unless_allowed(shipped_run, tmp_path, write):
    run, baseline = shipped_run
    candidate = mutated(run, tmp_path, break_one, count=10)  # 10 broken, 0 fixed: p = 0.002
    assert not gate(read_baseline(baseline), candidate, load_rules(None)).passed
    lenient = write("r.yaml", "suites:\n  math: {max_accuracy_drop: 0.1}\n")
    assert gate(read_baseline(baseline), candidate, load_rules(lenient)).passed
    strict_alpha = write("a.yaml", "alpha: 0.001\n")
    assert gate(read_baseline(baseline), candidate, load_rules(strict_alpha)).passed


def test_min_accuracy_rule(shipped_run, write):
    run, baseline = shipped_run
    ok = write("ok.yaml", "models: [sft]\nsuites:\n  math: {min_accuracy: 0.2}\n")
    high = write("high.yaml", "models: [sft]\nsuites:\n  math: {min_accuracy: 0.9}\n")
    assert gate(read_baseline(baseline), run, load_rules(ok)).passed
    result = gate(read_baseline(baseline), run, load_rules(high))
    (failed,) = [c for c in result.checks if not c.passed]
    assert (failed.suite, failed.rule) == ("math", "min_accuracy")


def test_repetition_and_no_stop_rules(shipped_run, tmp_path):
    run, baseline = shipped_run

    def loop(r):
        r["repetition"]["repeated"] = True
        return True

    def never_stop(r):
        r["finish_reason"] = "length"
        return True

    for change, rule in ((loop, "max_repetition_rise"), (never_stop, "max_no_stop_rise")):
        shutil.rmtree(tmp_path / "mutated", ignore_errors=True)
        candidate = mutated(run, tmp_path, change, count=20)  # +6.2 points of 324
        result = gate(read_baseline(baseline), candidate, load_rules(None))
        assert [(c.suite, c.rule) for c in result.checks if not c.passed] == [("math", rule)]


def test_junit_names_the_failures(shipped_run, tmp_path):
    run, baseline = shipped_run
    junit = tmp_path / "junit.xml"
    assert (
        run_cli(
            "gate",
            "--baseline",
            str(baseline),
            str(run),
            "--candidate",
            "base",
            "--baseline-model",
            "sft",
            "--junit",
            str(junit),
        )
        == 1
    )
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["math: max_accuracy_drop"].find("failure") is not None
    assert cases["general: max_repetition_rise"].find("failure") is None
    assert cases["math/add-01"].find("failure") is not None  # right under sft, wrong under base
    failures = sum(1 for c in cases.values() if c.find("failure") is not None)
    assert int(root.get("failures")) == failures and int(root.get("tests")) == len(cases)


def test_bad_inputs_exit_2(shipped_run, tmp_path, write, capsys):
    run, baseline = shipped_run
    assert run_cli("gate", "--baseline", str(tmp_path / "nope"), str(run)) == 2
    assert "no baseline here" in capsys.readouterr().err
    assert run_cli("gate", "--baseline", str(baseline), str(tmp_path / "norun")) == 2
    assert "not a run folder" in capsys.readouterr().err
    rules = write("bad.yaml", "alpha: 2\nsuites:\n  math: {min_acc: 0.5}\n")
    assert run_cli("gate", "--baseline", str(baseline), str(run), "--rules", str(rules)) == 2
    err = capsys.readouterr().err
    assert f"{rules}:1: alpha:" in err and f"{rules}:3: suites.math.min_acc: unknown rule" in err
    twice = "defaults:\n  min_accuracy: 0.5\n  min_accuracy: 0.1\nsuites:\n  math: {}\n  math: {}\n"
    rules = write("twice.yaml", twice)  # YAML would keep the last silently: the lower floor
    assert run_cli("gate", "--baseline", str(baseline), str(run), "--rules", str(rules)) == 2
    err = capsys.readouterr().err
    assert f"{rules}:3: defaults.min_accuracy: duplicate key" in err
    assert f"{rules}:6: suites.math: duplicate key" in err
    changed = tmp_path / "changed"
    shutil.copytree(run, changed)
    folder = RunFolder(changed)
    data = folder.read_run()
    data["suites"]["math"]["hash"] = "0123456789abcdef"
    folder.write_run(data)
    assert run_cli("gate", "--baseline", str(baseline), str(changed)) == 2
    assert "suite changed under the baseline: math" in capsys.readouterr().err
    with pytest.raises(InputError, match="no model"):
        gate(read_baseline(baseline), run, load_rules(None), candidate="nope")


def test_run_with_gate_and_the_committed_baseline(tmp_path, capsys):
    """What .ci/run does: the shipped sft against reports/baseline with the project's rules."""
    out = tmp_path / "run"
    code = run_cli(
        *run_args("math", "sft", out),
        "--gate",
        str(PROJECT / "reports/baseline"),
        "--rules",
        str(PROJECT / "reports/baseline/rules.yaml"),
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "gate passed" in printed and "min_accuracy" in printed
    assert "suite 'general'" not in printed  # only math ran: nothing else is gated


@contextmanager
def accuracy_ceiling_rule() -> Iterator[str]:
    """A rule registered for one test only: a ceiling on the candidate's accuracy."""

    @gating.rule("max_accuracy")
    def max_accuracy(pair: SuitePair, *, ceiling: Fraction | None = None) -> Verdict | None:
        if ceiling is None:
            return None
        right = sum(v["correct"] for v in pair.current.values())
        accuracy = right / len(pair.current)
        return Verdict(
            None,
            accuracy,
            f"<= {100 * ceiling:.1f}%",
            accuracy <= ceiling,
            f"{right}/{len(pair.current)} right",
            message=f"suspiciously good: {right}/{len(pair.current)} right",
        )

    try:
        yield "max_accuracy"
    finally:
        gating.unregister("max_accuracy")


def test_a_registered_rule_is_gated_reported_and_validated(shipped_run, tmp_path, write, capsys):
    run, baseline = shipped_run
    rules = write("ceiling.yaml", "models: [sft]\nsuites:\n  math: {max_accuracy: 0.1}\n")
    wrong = write("wrong.yaml", "defaults:\n  max_accuracy_drop: 0.0\n  max_accuracy: high\n")
    junit = tmp_path / "junit.xml"
    with accuracy_ceiling_rule() as name:
        assert load_rules(rules).for_suite("math").max_accuracy == 0.1
        with pytest.raises(InputError) as bad:
            load_rules(wrong)
        assert str(bad.value) == (
            f"{wrong}:3: defaults.max_accuracy: expected a fraction between 0 and 1, got 'high'"
        )
        args = ("gate", "--baseline", str(baseline), str(run), "--rules", str(rules))
        assert run_cli(*args, "--junit", str(junit)) == 1
        out = capsys.readouterr().out
        assert "GATE FAILED: 1 check(s) regressed" in out
        assert "sft / math: max_accuracy: suspiciously good: 76/324 right" in out
        cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
        failure = cases[f"math: {name}"].find("failure")
        assert failure is not None and failure.get("message") == (
            "max_accuracy: 76/324 right (limit <= 10.0%)"
        )
        assert f"general: {name}" not in cases  # unset there: the rule does not apply
        assert cases["math: max_accuracy_drop"].find("failure") is None
    assert "max_accuracy" not in gating.RULES
    with pytest.raises(InputError, match="suites.math.max_accuracy: unknown rule"):
        load_rules(rules)
    assert gate(read_baseline(baseline), run, load_rules(None)).passed
