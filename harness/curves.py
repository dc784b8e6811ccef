"""A run whose models are the points of one training run (`NAME@step-S`): curves over the steps.

Written by evaluation during `harness sft` (run.json has each point's step, epoch, learning rate
and loss) or by `harness run --models 'DIR/checkpoint-*'`. Per suite: accuracy with its 95%
interval, repetition and no-stop rates at each point, the best point, and the first point whose
outcomes differ from step 0's by McNemar's exact test on the same questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup
from tabulate import tabulate

from .charts import line_chart
from .compare import outcomes, paired_outcomes
from .sample import Sample, as_samples
from .summarize import summarize

POINT_NAME = re.compile(r"^(?P<run>.+)@step-(?P<step>\d+)$")
ALPHA = 0.05


@dataclass
class Curve:
    run: str
    steps: list[int]
    models: list[str]  # the point at each step
    suites: list[str]
    scores: dict[str, dict[str, Any]]  # model -> suite -> summary entry
    loss: list[tuple[int, float]]  # the training loss as logged
    point_loss: dict[int, float | None] = field(default_factory=dict)
    best: dict[str, int] = field(default_factory=dict)  # suite -> step of the best accuracy
    first_change: dict[str, int | None] = field(default_factory=dict)  # suite -> step or None
    p_values: dict[str, dict[int, float]] = field(default_factory=dict)  # suite -> step -> p


def _points(run: dict[str, Any], samples: list[Sample]) -> dict[str, list[tuple[int, str]]]:
    """Per training run, its (step, model) points, from run.json or else from model names."""
    found: dict[str, list[tuple[int, str]]] = {}
    for model in dict.fromkeys(s.model for s in samples):
        training = run.get("models", {}).get(model, {}).get("training") or {}
        match = POINT_NAME.match(model)
        if "step" in training:
            name, step = training.get("run") or (match and match["run"]) or model, training["step"]
        elif match:
            name, step = match["run"], int(match["step"])
        else:
            continue
        found.setdefault(name, []).append((int(step), model))
    return found


def read_curve(run: dict[str, Any], records: list[Any]) -> Curve | None:
    """The curve of the run's longest series of points (two or more), or None."""
    samples = as_samples(records)
    series = {k: sorted(v) for k, v in _points(run, samples).items() if len(v) >= 2}
    if not series:
        return None
    name, points = max(series.items(), key=lambda kv: len(kv[1]))
    steps, models = [s for s, _ in points], [m for _, m in points]
    summary = summarize([s for s in samples if s.model in models])["models"]
    suites = [s for s in dict.fromkeys(x.suite for x in samples) if s in summary[models[0]]]
    logged = (run.get("training") or {}).get("loss_curve") or []
    curve = Curve(
        name,
        steps,
        models,
        suites,
        {m: summary.get(m, {}) for m in models},
        [(p["step"], p["loss"]) for p in logged],
        {s: run.get("models", {}).get(m, {}).get("training", {}).get("loss") for s, m in points},
    )
    first = outcomes(samples, models[0])
    for suite in suites:
        accs = [(summary[m][suite]["accuracy"], -s) for s, m in points if suite in summary[m]]
        curve.best[suite] = -max(accs)[1]  # the earliest of the best
        curve.p_values[suite] = {}
        curve.first_change[suite] = None
        for step, model in points[1:]:
            a = {k: v for k, v in first.items() if k[0] == suite}
            b = {k: v for k, v in outcomes(samples, model).items() if k[0] == suite}
            (p,) = paired_outcomes(a, b, models[0], model) or [None]
            if p is None:
                continue
            curve.p_values[suite][step] = p.p_value
            if p.p_value < ALPHA and curve.first_change[suite] is None:
                curve.first_change[suite] = step
    return curve


def charts(curve: Curve) -> list[Markup]:
    """Accuracy (with its 95% band), repetition and no-stop rates per suite against the step,
    marking each suite's best point and first significant change; then the training loss."""

    def series(rate: str, band: str) -> list[tuple[str, list[tuple[float, ...]]]]:
        out = []
        for suite in curve.suites:
            pts = []
            for step, model in zip(curve.steps, curve.models, strict=True):
                e = curve.scores[model].get(suite)
                if e:
                    pts.append((step, e[rate], *e[band]))
            out.append((suite, pts))
        return out

    marks: dict[str, list[tuple[float, str]]] = {}
    for suite in curve.suites:
        marks[suite] = [(curve.best[suite], "best accuracy")]
        if curve.first_change[suite] is not None:
            marks[suite].append((curve.first_change[suite], "first significant change (McNemar)"))
    out = [
        line_chart("Accuracy by step (95% Wilson band)", series("accuracy", "ci95"), marks=marks),
        line_chart("Repetition rate by step", series("repetition_rate", "repetition_ci95")),
        line_chart("No-stop rate by step", series("no_stop_rate", "no_stop_ci95")),
    ]
    loss = curve.loss or [(s, v) for s, v in curve.point_loss.items() if v is not None]
    if loss:
        pts = [(float(s), v, v, v) for s, v in loss]
        out.append(line_chart("Training loss", [("loss", pts)], percent=False))
    return out


def rows(curve: Curve) -> list[dict[str, Any]]:
    """One row per point: step, loss, and per suite the summary entry, p against step 0,
    whether it is the suite's best point and whether it differs significantly."""
    out = []
    for step, model in zip(curve.steps, curve.models, strict=True):
        cells = {}
        for suite in curve.suites:
            e = curve.scores[model].get(suite)
            p = curve.p_values[suite].get(step)
            cells[suite] = e and {
                **e,
                "p": p,
                "significant": p is not None and p < ALPHA,
                "best": curve.best[suite] == step,
            }
        out.append(
            {"step": step, "model": model, "loss": curve.point_loss.get(step), "cells": cells}
        )
    return out


def table(curve: Curve, fmt: str = "github") -> str:
    """The rows as a table: accuracy [CI] (the best in bold), repetition, no-stop, and p against
    step 0 (* below 0.05)."""
    headers = ["step", "loss"]
    for suite in curve.suites:
        headers += [f"{suite} accuracy", "repeats", "no stop", "p vs 0"]
    body = []
    for row in rows(curve):
        line: list[Any] = [row["step"], "" if row["loss"] is None else f"{row['loss']:.4g}"]
        for suite in curve.suites:
            c = row["cells"][suite]
            if not c:
                line += ["", "", "", ""]
                continue
            acc = f"{100 * c['accuracy']:.1f}% [{100 * c['ci95'][0]:.0f}, {100 * c['ci95'][1]:.0f}]"
            p = "" if c["p"] is None else f"{c['p']:.2g}{'*' if c['significant'] else ''}"
            line += [
                f"**{acc}**" if c["best"] else acc,
                f"{100 * c['repetition_rate']:.1f}%",
                f"{100 * c['no_stop_rate']:.1f}%",
                p,
            ]
        body.append(line)
    return tabulate(body, headers=headers, tablefmt=fmt)


def notes(curve: Curve) -> str:
    """Per suite, where it peaked and where it first moved away from step 0."""
    return "; ".join(
        f"{s}: best at step {curve.best[s]}"
        + (
            f", first differs from step 0 at step {curve.first_change[s]}"
            if curve.first_change[s] is not None
            else ", never significantly different from step 0"
        )
        for s in curve.suites
    )


def curve_markdown(folder: Path) -> str:
    """The curve table of a run folder and how to read it ("" for a run that is no curve)."""
    from .results import RunFolder

    f = RunFolder(folder)
    curve = read_curve(f.read_run(), f.read_samples())
    if curve is None:
        return ""
    return f"{table(curve)}\n\n{notes(curve)}. (p: McNemar's exact test against step 0.)"
