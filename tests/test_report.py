"""Reports: statistics against hand-computed values, escaping, and the page in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from harness.compare import compare_runs, paired
from harness.results import RunFolder
from harness.stats import mcnemar_exact, paired_bootstrap, wilson

from .conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL_OUTPUT = (
    "<script>document.body.setAttribute('data-pwned', 'script')</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\"> 1 2 3 1 2 3 1 2 3"
)
SUITE = """name: html
defaults: {max_new_tokens: 6}
questions:
  - id: tag-in-prompt
    prompt: "What does <script>alert(1)</script> do?"
    answer: "<b>nothing</b>"
    scorer: exact
    tags: [html]
""" + "".join(
    f"  - {{id: q{i}, prompt: 'What is {i} + 1?', answer: {i + 1}, scorer: numeric, tags: [sum]}}\n"
    for i in range(8)
)


# --------------------------------------------------------------------------- statistics


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(3, 10) == pytest.approx(2 * (1 + 13 + 78 + 286) / 2**13)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 3) == mcnemar_exact(3, 10)


def test_wilson_by_hand():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))


def test_paired_bootstrap_matches_index_resampling_and_covers_the_truth():
    # one data set: the multinomial shortcut equals resampling question indices
    diffs = np.array([1] * 30 + [-1] * 10 + [0] * 160)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(diffs), size=(10_000, len(diffs)))
    ref = np.percentile(diffs[idx].mean(axis=1), [2.5, 97.5])
    lo, hi = paired_bootstrap(30, 10, 200)
    assert lo == pytest.approx(ref[0], abs=0.01) and hi == pytest.approx(ref[1], abs=0.01)
    # coverage: P(fixed) = 0.2, P(broken) = 0.1, so the true difference is 0.1
    rng = np.random.default_rng(7)
    covered = 0
    for trial in range(200):
        counts = rng.multinomial(200, [0.2, 0.1, 0.7])
        lo, hi = paired_bootstrap(int(counts[0]), int(counts[1]), 200, samples=2000, seed=trial)
        covered += lo <= 0.1 <= hi
    assert 0.9 <= covered / 200 <= 0.99


def test_paired_counts_on_records():
    recs = [
        {"model": m, "suite": "s", "id": str(i), "correct": c}
        for i, (ca, cb) in enumerate([(0, 1), (0, 1), (1, 0), (1, 1), (0, 0)])
        for m, c in (("a", ca), ("b", cb))
    ] + [{"model": "a", "suite": "s", "id": "extra", "correct": True}]
    (p,) = paired(recs, "a", "b")
    assert (p.fixed, p.broken, p.both_right, p.both_wrong, p.n) == (2, 1, 1, 1, 5)
    assert p.accuracy_a == 0.4 and p.accuracy_b == 0.6 and p.only_a == ["extra"]


# --------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, random_model_dir, chat_model_dir):
    """A real two-model run, then one output replaced by hostile HTML, re-rendered."""
    root = tmp_path_factory.mktemp("report")
    suite = root / "html.yaml"
    suite.write_text(SUITE)
    out = root / "run"
    models = f"{chat_model_dir},{random_model_dir}"
    assert (
        run_cli("run", "--suite", str(suite), "--models", models, "--out", str(out), "--quiet") == 0
    )
    folder = RunFolder(out)
    rows = folder.read_samples()
    rows[0]["output"] = EVIL_OUTPUT
    rows[0]["repetition"]["tail_loop"] = {
        "period": 6,
        "repeats": 3.0,
        "span": "1 2 3",
        "start_char": EVIL_OUTPUT.index("1 2 3"),
    }
    folder.rewrite_samples(rows)
    assert run_cli("report", str(out)) == 0
    return out


def test_run_writes_both_reports(report_run):
    html = (report_run / "report.html").read_text()
    md = (report_run / "report.md").read_text()
    for needle in (
        'id="scores"',
        'class="chart"',
        'id="paired"',
        'id="questions"',
        "McNemar",
        "fingerprint",
    ):
        assert needle in html
    assert html.count('<svg role="img" class="chart"') == 3
    assert "| model" in md and "Paired comparison" in md


def test_reports_are_self_contained_and_escaped(report_run):
    html = (report_run / "report.html").read_text()
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), "an external URL"
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "&lt;script&gt;document.body.setAttribute" in html
    assert "&lt;img src=x onerror=" in html
    assert "What does &lt;script&gt;alert(1)&lt;/script&gt; do?" in html
    assert "&lt;b&gt;nothing&lt;/b&gt;" in html
    assert '<mark title="repeated span">1 2 3 1 2 3 1 2 3</mark>' in html
    md = (report_run / "report.md").read_text()
    assert "<script" not in md and "<img" not in md


def chromium(*args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--user-data-dir=" + os.environ.get("TMPDIR", "/tmp") + f"/harness-chromium-{os.getpid()}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("HARNESS_REQUIRE_BROWSER"),
    reason="headless Chromium is not installed (.ci/run installs it)",
)


@needs_browser
def test_report_in_a_real_browser(report_run, tmp_path):
    assert CHROMIUM, "HARNESS_REQUIRE_BROWSER is set but chromium is missing"
    page = (report_run / "report.html").as_uri()
    dom = chromium("--virtual-time-budget=2000", "--dump-dom", page).stdout
    assert 'id="scores"' in dom and dom.count('class="chart"') == 3
    assert len(re.findall(r'<tr class="s0', dom)) == 9
    assert "data-pwned" not in re.search(r"<body[^>]*>", dom).group()  # nothing ran
    shot = tmp_path / "report.png"
    chromium("--window-size=1400,2400", f"--screenshot={shot}", page)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@needs_browser
def test_filters_work_without_scripts_in_the_page(report_run, tmp_path):
    """The report has no script; the probe below only clicks the CSS-driven radio buttons."""
    probe = tmp_path / "probe.html"
    html = (report_run / "report.html").read_text()
    script = """<script>
    const visible = () => [...document.querySelectorAll('#questions tbody tr')]
        .filter(r => getComputedStyle(r).display !== 'none').length;
    const out = [visible()];
    for (const id of ['show-changed', 'show-failed', 'show-all', 'tag-1']) {
        document.getElementById(id).click(); out.push(visible()); }
    document.title = 'counts:' + out.join(',');
    </script>"""
    probe.write_text(html.replace("</body>", script + "</body>"))
    dom = chromium("--virtual-time-budget=2000", "--dump-dom", probe.as_uri()).stdout
    counts = [int(x) for x in re.search(r"<title>counts:([\d,]+)</title>", dom).group(1).split(",")]
    rows = RunFolder(report_run).read_samples()
    by_q: dict[str, list[bool]] = {}
    for r in rows:
        by_q.setdefault(r["id"], []).append(r["correct"])
    changed = sum(1 for v in by_q.values() if len(set(v)) > 1)
    failed = sum(1 for v in by_q.values() if not all(v))
    assert counts == [9, changed, failed, 9, 8]  # tag-1 is "sum": 8 questions


def test_compare_two_runs_lists_unmatched_questions(report_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(report_run, other)
    folder = RunFolder(other)
    rows = [r for r in folder.read_samples() if r["id"] != "q7"]
    for r in rows:
        if r["id"] == "q0":
            r["correct"] = not r["correct"]
    folder.rewrite_samples(rows)
    result = compare_runs(report_run, other)
    assert len(result["pairs"]) == 2
    for rows_ in result["pairs"].values():
        (p,) = rows_
        assert p.only_a == ["q7"] and p.n == 8 and p.fixed + p.broken == 1
    assert run_cli("compare", str(report_run), str(other)) == 0
    assert "only in" in capsys.readouterr().out
    assert run_cli("compare", str(report_run), str(tmp_path / "missing")) == 2
    summary = json.loads((report_run / "summary.json").read_text())
    assert summary["models"]
