"""Plain-text tables of a summary for the terminal (tabulate)."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _acc(entry: dict[str, Any]) -> str:
    lo, hi = entry["ci95"]
    return f"{_pct(entry['accuracy'])} [{_pct(lo)}, {_pct(hi)}]"


def summary_table(summary: dict[str, Any], fmt: str = "simple") -> str:
    rows = []
    for model, suites in summary["models"].items():
        for suite, e in suites.items():
            rows.append(
                [
                    model,
                    suite,
                    e["n"],
                    _acc(e),
                    _pct(e["repetition_rate"]),
                    _pct(e["no_stop_rate"]),
                    e["mean_new_tokens"],
                    e["errors"],
                ]
            )
    headers = [
        "model",
        "suite",
        "n",
        "accuracy [95% CI]",
        "repetition",
        "no stop",
        "mean tokens",
        "errors",
    ]
    return tabulate(rows, headers=headers, tablefmt=fmt)


def tag_table(summary: dict[str, Any], fmt: str = "simple") -> str:
    rows = []
    for model, suites in summary["models"].items():
        for suite, e in suites.items():
            for tag, t in e.get("by_tag", {}).items():
                rows.append(
                    [
                        model,
                        suite,
                        tag,
                        t["n"],
                        _acc(t),
                        _pct(t["repetition_rate"]),
                        _pct(t["no_stop_rate"]),
                    ]
                )
    if not rows:
        return ""
    return tabulate(
        rows,
        headers=["model", "suite", "tag", "n", "accuracy [95% CI]", "repetition", "no stop"],
        tablefmt=fmt,
    )


def _detectable(drop: float | None) -> str:
    return "none (too few)" if drop is None else f">= {100 * drop:.0f} pts"


def paired_table(rows: list, fmt: str = "simple") -> str:
    """Rows of compare.Paired: accuracy a -> b, the change with its paired-bootstrap interval,
    the flips, and McNemar's exact p."""
    body = [
        [
            p.suite,
            f"{p.a} -> {p.b}",
            p.n,
            f"{_pct(p.accuracy_a)} -> {_pct(p.accuracy_b)}",
            f"{100 * p.difference:+.1f} [{100 * p.ci95[0]:+.1f}, {100 * p.ci95[1]:+.1f}]",
            p.fixed,
            p.broken,
            p.both_right,
            p.both_wrong,
            f"{p.p_value:.3g}",
            _detectable(p.detectable_drop()),
        ]
        for p in rows
    ]
    headers = [
        "suite",
        "models",
        "n",
        "accuracy",
        "change, pts [95% CI]",
        "fixed",
        "broken",
        "both right",
        "both wrong",
        "McNemar p",
        "detects drops of",
    ]
    return tabulate(body, headers=headers, tablefmt=fmt)
