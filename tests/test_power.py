"""How large a drop a suite can detect: the exact calculation against a simulation of the
gate's own test, and where it shows (gate, compare, report, `harness power`)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.power import min_detectable_drop, power, questions_needed
from harness.stats import mcnemar_exact
from harness.suites import load_suites

from .conftest import PROJECT, run_args, run_cli


def simulated_power(n: int, drop: float, discordant: float, alpha: float, runs: int, seed: int):
    """The share of simulated suites on which the gate's test flags the drop."""
    d = max(discordant, drop)
    p_broken, p_fixed = (d + drop) / 2, (d - drop) / 2
    counts = np.random.default_rng(seed).multinomial(n, [p_broken, p_fixed, 1 - d], size=runs)
    return float(np.mean([b > f and mcnemar_exact(int(f), int(b)) < alpha for b, f, _ in counts]))


@pytest.mark.parametrize(
    ("n", "discordant", "alpha"), [(28, 0.3, 0.05), (126, 0.2, 0.05), (300, 0.1, 0.01)]
)
def test_the_detectable_drop_has_80_percent_power_in_simulation(n, discordant, alpha):
    drop = min_detectable_drop(n, discordant, alpha)
    assert 0 < drop < 1
    assert power(n, drop, discordant, alpha) == pytest.approx(0.8, abs=0.002)
    # 4,000 simulated suites: the standard error of a share near 0.8 is 0.0063
    assert simulated_power(n, drop, discordant, alpha, 4000, seed=n) == pytest.approx(0.8, abs=0.03)
    assert simulated_power(n, 0.6 * drop, discordant, alpha, 2000, seed=n + 1) < 0.7


def test_more_questions_detect_less_and_planning_inverts_it():
    drops = [min_detectable_drop(n, 0.2) for n in (30, 100, 300, 1000)]
    assert drops == sorted(drops, reverse=True)
    n = questions_needed(0.1, 0.2)
    assert min_detectable_drop(n, 0.2) <= 0.1 < min_detectable_drop(n - 1, 0.2)
    assert min_detectable_drop(5, 0.2) is None  # five questions never reach p < 0.05 twice over


def test_harness_power_answers_both_questions(capsys):
    assert run_cli("power", "--n", "126", "--discordant", "0.2") == 0
    out = capsys.readouterr().out
    assert "n=126: detects a drop of 11.5 points or more" in out and "exact" in out
    assert run_cli("power", "--drop", "0.1", "--discordant", "0.2") == 0
    assert capsys.readouterr().out.startswith(f"{questions_needed(0.1, 0.2)} questions detect")
    assert run_cli("power") == 2
    assert run_cli("power", "--n", "20", "--alpha", "2") == 2


def test_the_gate_says_what_each_suite_can_detect(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(*run_args("general,math", "sft", out)) == 0
    capsys.readouterr()
    gate = ["gate", "--baseline", str(PROJECT / "reports/baseline"), str(out)]
    assert run_cli(*gate) == 0
    text = capsys.readouterr().out
    for suite in load_suites("general,math"):  # the same weights: no question flips
        drop = min_detectable_drop(len(suite.questions), 0.0)
        assert f"detects drops of {100 * drop:.0f}+ pts" in text, suite.name
    n = len(load_suites("general")[0].questions)
    assert f"warning: sft/general: n={n}, 0% of questions flipping" in text
    assert "gate passed" in text
    assert run_cli(*gate, "--strict-power", "--junit", str(tmp_path / "j.xml")) == 1
    text = capsys.readouterr().out
    assert "sft / general: power:" in text and "GATE FAILED" in text
    assert 'name="general: power"' in (tmp_path / "j.xml").read_text()
    rules = tmp_path / "rules.yaml"
    rules.write_text("strict_power: true\ndefaults: {max_accuracy_drop: 0.5}\n")
    assert run_cli(*gate, "--rules", str(rules)) == 0  # 50-point drops are within reach


def test_the_report_opens_with_the_answer(tmp_path):
    out = tmp_path / "run"
    assert run_cli(*run_args("general,math", "base,sft", out)) == 0
    html = (out / "report.html").read_text()
    answer = html.index('<h2 id="answer">The answer</h2>')
    assert answer < html.index("<h2>Scores</h2>") < html.index("<h2>Run</h2>")
    first = html[answer : html.index("</ul>", answer)]
    assert "math: base → sft +23.5 pts, p &lt; 1e-20, significant" in first
    assert "general: base → sft -1.7 pts, p = 0.22, not significant; this suite detects" in first
    md = (out / "report.md").read_text()
    assert md.index("- math: base → sft +23.5 pts") < md.index("| model")
