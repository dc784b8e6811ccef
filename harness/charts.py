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


Point = tuple[float, float, float, float]  # (x, value, band low, band high)
LINE_W, LINE_H = 560, 170


def line_chart(
    title: str,
    series: list[tuple[str, list[Point]]],
    *,
    percent: bool = True,
    marks: dict[str, list[tuple[float, str]]] | None = None,
) -> Markup:
    """Lines over training steps, one per series, each with its 95% band shaded; `marks` puts
    labelled dots on a series at given x (the best point, the first significant change)."""
    xs = [p[0] for _, pts in series for p in pts] or [0.0, 1.0]
    lo_x, hi_x = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    values = [v for _, pts in series for p in pts for v in p[1:]]
    lo_y, hi_y = (0.0, 1.0) if percent else (min(values, default=0.0), max(values, default=1.0))
    if hi_y <= lo_y:
        hi_y = lo_y + 1.0
    columns = max(1, (LINE_W - LEFT) // LEGEND_W)
    height = TOP + LINE_H + BOTTOM + 18 * ((len(series) - 1) // columns)
    sx = lambda x: LEFT + (LINE_W - LEFT - 16) * (x - lo_x) / (hi_x - lo_x)  # noqa: E731
    sy = lambda v: TOP + LINE_H * (1 - (v - lo_y) / (hi_y - lo_y))  # noqa: E731
    parts = [
        f'<svg role="img" class="chart line" width="{LINE_W}" height="{height}" '
        f'viewBox="0 0 {LINE_W} {height}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):
        tick = lo_y + (hi_y - lo_y) * i / 4
        label = f"{100 * tick:.0f}%" if percent else f"{tick:.3g}"
        parts.append(
            f'<line x1="{LEFT}" x2="{LINE_W - 10}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" '
            f'class="grid"/><text x="{LEFT - 6}" y="{sy(tick) + 4:.1f}" class="tick">{label}</text>'
        )
    ticks = sorted(set(xs))
    if len(ticks) > 10:  # a logged loss: a handful of evenly spaced labels, not every step
        ticks = [round(lo_x + (hi_x - lo_x) * i / 5) for i in range(6)]
    for x in ticks:
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + LINE_H + 16}" class="label">{x:g}</text>')
    for i, (name, pts) in enumerate(series):
        pts = sorted(pts)
        c = color(i)
        if len(pts) > 1 and any(p[2] != p[3] for p in pts):
            band = [f"{sx(x):.1f},{sy(hi):.1f}" for x, _, _, hi in pts] + [
                f"{sx(x):.1f},{sy(lo):.1f}" for x, _, lo, _ in reversed(pts)
            ]
            parts.append(f'<polygon points="{" ".join(band)}" fill="{c}" opacity="0.15"/>')
        path = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v, _, _ in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, v, lo, hi in pts:
            shown = f"{100 * v:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" if percent else f"{v:.4g}"
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(v):.1f}" r="3" fill="{c}">'
                f"<title>{escape(name)} at step {x:g}: {shown}</title></circle>"
            )
        for x, label in (marks or {}).get(name, []):
            v = next(p[1] for p in pts if p[0] == x)
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(v):.1f}" r="6" fill="none" stroke="{c}" '
                f'stroke-width="2" class="mark"><title>{escape(name)}: {escape(label)} '
                f"(step {x:g})</title></circle>"
            )
        lx = LEFT + (i % columns) * LEGEND_W
        ly = TOP + LINE_H + 36 + 18 * (i // columns)
        parts.append(
            f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{c}"/>'
            f'<text x="{lx + 16}" y="{ly}" class="legend">{escape(name)}</text>'
        )
    parts.append(f'<text x="{LINE_W - 12}" y="{TOP + LINE_H + 30}" class="tick">step</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
