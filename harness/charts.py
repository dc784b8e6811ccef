"""Inline SVG charts for the HTML report: no script, no external file, readable when printed."""

from __future__ import annotations

from markupsafe import Markup, escape

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
BAR, GAP, PLOT_H, TOP, LEFT, BOTTOM, LEGEND_W = 22, 26, 160, 28, 44, 46, 140

Bar = tuple[str, float, float, float]  # (model, value, ci low, ci high), values in [0, 1]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def bar_chart(title: str, groups: list[tuple[str, list[Bar]]], models: list[str]) -> Markup:
    """Grouped vertical bars (one group per suite, one bar per model) with 95% whiskers."""
    per_group = len(models) * BAR + GAP
    width = max(LEFT + max(1, len(groups)) * per_group + 10, 8 * len(title) + 20, 300)
    columns = max(1, (width - LEFT) // LEGEND_W)
    height = TOP + PLOT_H + BOTTOM + 18 * ((len(models) - 1) // columns)
    y = lambda v: TOP + PLOT_H * (1 - max(0.0, min(1.0, v)))  # noqa: E731 - a local scale
    parts = [
        f'<svg role="img" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{width - 10}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" class="tick">{int(tick * 100)}%</text>'
        )
    for g, (label, bars) in enumerate(groups):
        x0 = LEFT + g * per_group + GAP / 2
        for model, value, lo, hi in bars:
            i = models.index(model)
            x = x0 + i * BAR
            parts.append(
                f'<rect x="{x + 2:.1f}" y="{y(value):.1f}" width="{BAR - 4}" '
                f'height="{TOP + PLOT_H - y(value):.1f}" fill="{color(i)}">'
                f"<title>{escape(model)} / {escape(label)}: {100 * value:.1f}% "
                f"[{100 * lo:.1f}%, {100 * hi:.1f}%]</title></rect>"
            )
            cx = x + BAR / 2
            parts.append(
                f'<path d="M{cx:.1f} {y(lo):.1f}V{y(hi):.1f}M{cx - 4:.1f} {y(lo):.1f}h8'
                f'M{cx - 4:.1f} {y(hi):.1f}h8" class="whisker"/>'
            )
        cx = x0 + len(models) * BAR / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{TOP + PLOT_H + 16}" class="label">{escape(label)}</text>'
        )
    for i, model in enumerate(models):
        lx = LEFT + (i % columns) * LEGEND_W
        ly = TOP + PLOT_H + 36 + 18 * (i // columns)
        parts.append(
            f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{color(i)}"/>'
            f'<text x="{lx + 16}" y="{ly}" class="legend">{escape(model)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
