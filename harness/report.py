"""`harness report RUN_DIR`: report.html (one self-contained file) and report.md (for a PR).

Everything comes from the run folder's files, so a report can be re-rendered without a model.
Templates live in harness/templates/; the HTML environment autoescapes, so prompts and outputs
(which may hold `<script>`) always show as text.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape
from tabulate import tabulate

from .charts import bar_chart, color
from .compare import model_pairs, paired
from .curves import Curve, read_curve
from .curves import charts as curve_charts
from .curves import notes as curve_notes
from .curves import rows as curve_rows
from .curves import table as curve_table
from .files import write_atomic
from .results import RunFolder
from .sample import Sample, as_samples
from .summarize import FRAGILE_MARGIN, fragile, summarize
from .tables import paired_table, summary_table

MAX_OUTPUT_CHARS = 2000  # per cell in the HTML; the full text stays in samples.jsonl
MD_CELL_CHARS = 80
MD_CHANGED_ROWS = 10
FRAGILE_ROWS = 20  # the closest calls listed per report; the count covers them all


def md_cell(value: Any, limit: int = MD_CELL_CHARS) -> str:
    """A value safe inside a Markdown table cell: one line, pipes escaped, HTML neutralised."""
    text = " ".join(str(value).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("`", "\\`")


def highlight(output: str, repetition: dict[str, Any]) -> Markup:
    """The output, escaped, with the looping tail wrapped in <mark>, cut at MAX_OUTPUT_CHARS."""
    loop = repetition.get("tail_loop")
    start = loop["start_char"] if loop else len(output)
    head, tail = output[:start], output[start:]
    cut = ""
    if len(output) > MAX_OUTPUT_CHARS:
        cut = f" … ({len(output) - MAX_OUTPUT_CHARS} more characters in samples.jsonl)"
        head = head[:MAX_OUTPUT_CHARS]
        tail = tail[: max(0, MAX_OUTPUT_CHARS - len(head))]
    marked = Markup(f'<mark title="repeated span">{escape(tail)}</mark>') if tail else Markup("")
    return escape(head) + marked + escape(cut)


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("harness", "templates"),
        # report.html.j2 autoescapes; report.md.j2 escapes per cell with the `md` filter
        autoescape=select_autoescape(["html.j2", "html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x: f"{100 * x:.1f}%"
    env.filters["md"] = md_cell
    env.filters["short_hash"] = lambda h: str(h).split(":")[-1][:12]
    env.filters["verdict"] = verdict_text
    return env


def context(folder: RunFolder) -> dict[str, Any]:
    """Everything both templates render, from the run folder's files alone."""
    run = folder.read_run()
    records = as_samples(folder.read_samples())
    summary = summarize(records)  # from the samples, so a stale summary.json cannot disagree
    models, suites = _models_and_suites(run, records)
    scores = summary["models"]
    curve = read_curve(run, records)
    # a curve compares each point with step 0; any other run, every pair of models
    pairs = [(curve.models[0], m) for m in curve.models[1:]] if curve else model_pairs(models)
    comparisons = [paired(records, a, b) for a, b in pairs]
    questions, tags = _questions(records, models, suites)
    # the first screen: every comparison, or for a curve step 0 against its last point
    headline = comparisons[-1:] if curve else comparisons
    return {
        "run": run,
        "path": str(folder.path),
        "answer": [_answer(p) for comparison in headline for p in comparison],
        "self_checks": _self_checks(run, models),
        "fragile": _fragile(run, records, models),
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "models": models,
        "colors": {m: color(i) for i, m in enumerate(models)},
        "suites": suites,
        "scores": scores,
        "judges": _judges(run, suites),
        "unparsed": _unparsed(scores, models, suites),
        "tags": tags,
        "suite_tags": {s: _suite_tags(scores, models, s) for s in suites},
        "charts": _charts(scores, models, suites),
        "comparisons": comparisons,
        "questions": questions,
        "summary_md": summary_table(summary, "github"),
        "paired_md": [paired_table(c, "github") for c in comparisons],
        "tags_md": _tags_md(scores, models, suites),
        "changed_md": [_changed_md(questions, a, b) for a, b in pairs],
        "curve": curve and _curve(curve),
    }


def _models_and_suites(run: dict[str, Any], records: list[Sample]) -> tuple[list[str], list[str]]:
    """The models and suites that have samples, in run.json's order (the models by name where
    run.json names none of them)."""
    present = {r.model for r in records}
    models = [m for m in run.get("models", {}) if m in present] or sorted(present)
    suites = [s for s in run.get("suites", {}) if any(r.suite == s for r in records)]
    return models, suites


def _questions(
    records: list[Sample], models: list[str], suites: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per question, suite by suite, with each model's sample as a cell, whether the
    models disagree or any failed, and the CSS classes the HTML filters on; and every tag."""
    by_question: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        row = by_question.setdefault(
            (r.suite, r.id),
            {
                "suite": r.suite,
                "id": r.id,
                "question": r.question,
                "history": r.history,
                "answer": r.answer,
                "tags": list(r.tags),
                "cells": {},
            },
        )
        # the template's view of a sample: its fields and the highlighted output
        row["cells"][r.model] = {
            **vars(r),
            "html": highlight(r.output, r.repetition),
            "judgement": r.judgement,
        }
    tags = sorted({t for row in by_question.values() for t in row["tags"]})
    suite_index = {s: i for i, s in enumerate(suites)}
    tag_index = {t: i for i, t in enumerate(tags)}
    questions = []
    order = sorted(by_question.items(), key=lambda kv: (suite_index.get(kv[0][0], 99), kv[0][1]))
    for (suite, _), row in order:
        results = [row["cells"][m]["correct"] for m in models if m in row["cells"]]
        row["changed"] = len(set(results)) > 1
        row["failed"] = not all(results)
        row["classes"] = " ".join(
            [f"s{suite_index.get(suite, 99)}"]
            + [f"t{tag_index[t]}" for t in row["tags"]]
            + (["changed"] if row["changed"] else [])
            + (["failed"] if row["failed"] else [])
        )
        questions.append(row)
    return questions, tags


def _fragile(run: dict[str, Any], records: list[Sample], models: list[str]) -> dict[str, Any]:
    """The closest calls (greedy paths near another token), the first FRAGILE_ROWS listed, the
    count and the margin that counts as close per model."""
    dtypes = {m: run.get("models", {}).get(m, {}).get("dtype", "") for m in models}
    close = fragile(records, dtypes)
    return {
        "rows": close[:FRAGILE_ROWS],
        "count": {m: sum(r.model == m for r in close) for m in models},
        "margins": {m: FRAGILE_MARGIN.get(dtypes[m], 0.05) for m in models},
    }


def _unparsed(
    scores: dict[str, Any], models: list[str], suites: list[str]
) -> list[tuple[str, str, int, int]]:
    """(model, suite, unreadable verdicts, judged answers) wherever a judge's verdict went
    unread."""
    return [
        (m, s, scores[m][s]["judge_unparsed"], scores[m][s]["judged"])
        for s in suites
        for m in models
        if scores.get(m, {}).get(s, {}).get("judge_unparsed")
    ]


def _suite_tags(scores: dict[str, Any], models: list[str], suite: str) -> list[str]:
    return sorted({t for m in models for t in scores.get(m, {}).get(suite, {}).get("by_tag", {})})


def _charts(scores: dict[str, Any], models: list[str], suites: list[str]) -> list[Markup]:
    """Accuracy, repetition and no-stop rates per suite and model, with their intervals."""

    def chart(title: str, rate: str, ci: str) -> Markup:
        groups = [
            (s, [(m, scores[m][s][rate], *scores[m][s][ci]) for m in models if s in scores[m]])
            for s in suites
        ]
        return bar_chart(title, groups, models)

    return [
        chart("Accuracy (95% Wilson interval)", "accuracy", "ci95"),
        chart(
            "Repetition rate (tail loop or seq-rep-4 >= 0.5)",
            "repetition_rate",
            "repetition_ci95",
        ),
        chart("No-stop rate (ran into max_new_tokens)", "no_stop_rate", "no_stop_ci95"),
    ]


def _curve(curve: Curve) -> dict[str, Any]:
    """A fine-tuning curve's charts, table rows and notes (HTML) and its Markdown table."""
    return {
        "run": curve.run,
        "suites": curve.suites,
        "charts": curve_charts(curve),
        "rows": curve_rows(curve),
        "notes": curve_notes(curve),
        "md": curve_table(curve),
    }


def _answer(p: Any, alpha: float = 0.05) -> dict[str, Any]:
    """One line of the report's first screen: what changed on a suite, whether it is more than
    noise, and how large a drop the suite could have caught."""
    drop = p.detectable_drop(alpha)
    significant = p.p_value < alpha
    verdict = (
        ("significant" if p.difference > 0 else "a significant drop")
        if significant
        else "not significant"
    )
    reach = (
        "too few questions to detect any drop"
        if drop is None
        else f"this suite detects drops of {100 * drop:.0f}+ pts"
    )
    p_text = "p < 1e-20" if p.p_value < 1e-20 else f"p = {p.p_value:.2g}"
    text = f"{p.suite}: {p.a} → {p.b} {100 * p.difference:+.1f} pts, {p_text}, {verdict}"
    if not significant or p.difference < 0:
        text += f"; {reach}"
    return {"suite": p.suite, "text": text, "significant": significant, "better": p.difference > 0}


def _judges(run: dict[str, Any], suites: list[str]) -> list[dict[str, Any]]:
    """One row per judged suite and judge: who graded, with which rubric."""
    return [{"suite": s, **e} for s in suites for e in run.get("judges", {}).get(s, [])]


def verdict_text(judgement: dict[str, Any] | None) -> str:
    """A judge's verdict in a few characters: the grade, or why there is none."""
    if judgement is None:
        return ""
    if "skipped" in judgement:
        return "not judged"
    return str(judgement["verdict"]) if judgement["parsed"] else "unreadable"


def _self_checks(run: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """Per model: its decoder, and the self-check's outcome (None where run.json holds none)."""
    out = {}
    for m in models:
        info = run.get("models", {}).get(m, {})
        check = info.get("self_check")
        decoding = info.get("decoding", {})
        out[m] = {
            "decoder": decoding.get("decoder", "?"),
            "batch_invariant": decoding.get("batch_invariant"),
            "check": check,
            "failed": bool(check) and check["identical"] < check["questions"],
        }
    return out


def _tags_md(scores: dict[str, Any], models: list[str], suites: list[str]) -> str:
    rows = []
    for s in suites:
        for t in _suite_tags(scores, models, s):
            cells = []
            for m in models:
                e = scores.get(m, {}).get(s, {}).get("by_tag", {}).get(t)
                cells.append(f"{100 * e['accuracy']:.1f}% (n={e['n']})" if e else "")
            rows.append([s, md_cell(t), *cells])
    return (
        tabulate(rows, headers=["suite", "tag", *[md_cell(m) for m in models]], tablefmt="github")
        if rows
        else ""
    )


def _changed_md(questions: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    rows = []
    for q in questions:
        ca, cb = q["cells"].get(a), q["cells"].get(b)
        if ca and cb and ca["correct"] != cb["correct"]:
            rows.append(
                [
                    md_cell(q["suite"]),
                    md_cell(q["id"]),
                    md_cell(q["question"], 50),
                    "fixed" if cb["correct"] else "broken",
                    md_cell(ca["output"], 40) + _md_verdict(ca["judgement"]),
                    md_cell(cb["output"], 40) + _md_verdict(cb["judgement"]),
                ]
            )
    table = (
        tabulate(
            rows[:MD_CHANGED_ROWS],
            headers=["suite", "id", "question", "change", md_cell(a), md_cell(b)],
            tablefmt="github",
        )
        if rows
        else ""
    )
    return {
        "a": a,
        "b": b,
        "count": len(rows),
        "table": table,
        "more": max(0, len(rows) - MD_CHANGED_ROWS),
    }


def _md_verdict(judgement: dict[str, Any] | None) -> str:
    return f" (judge: {md_cell(verdict_text(judgement))})" if judgement else ""


def write_reports(run_dir: Path) -> tuple[Path, Path]:
    """Render report.html and report.md into the run folder (each written atomically)."""
    folder = RunFolder(run_dir)
    ctx = context(folder)
    env = _env()
    html = env.get_template("report.html.j2").render(**ctx)
    md = env.get_template("report.md.j2").render(**ctx)
    html_path, md_path = folder.path / "report.html", folder.path / "report.md"
    write_atomic(html_path, html)
    write_atomic(md_path, md)
    return html_path, md_path
