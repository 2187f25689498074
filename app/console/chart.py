"""The sending status chart: messages per minute by outcome, as inline SVG rendered on the server (no script)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

# Stacked bottom to top; colours readable on white and told apart by the legend's words as well.
COLOURS: dict[str, str] = {"sent": "#1a7f37", "retrying": "#bf8700", "deferred": "#57606a", "held": "#8250df",
                           "failed": "#cf222e"}
W, H, LEFT, BOTTOM, TOP = 960, 260, 48, 28, 10


def _nice(n: int) -> int:
    """The axis top: the smallest of 1, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that holds n (at least 2)."""
    scale = 1
    while True:
        for m in (1, 2, 2.5, 3, 4, 5, 6, 8):
            if n <= m * scale and m * scale >= 2:
                return int(m * scale)
        scale *= 10


def svg(data: dict[str, Any]) -> Markup:
    """One stacked bar per minute; a <title> on each bar says the minute and its counts (screen readers and
    hovering), and the caller shows the totals as a table too."""
    minutes: int = data["minutes"]
    start: datetime = data["start"]
    series: dict[str, list[int]] = data["series"]
    totals = [sum(series[name][i] for name in series) for i in range(minutes)]
    top = _nice(max(totals, default=0) or 1)
    plot_w, plot_h = W - LEFT - 8, H - BOTTOM - TOP
    bar = plot_w / minutes
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title" '
             f'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
             '<title id="chart-title">Messages per minute by outcome</title>']
    for frac in (0, 0.5, 1):
        y = TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{LEFT}" x2="{W - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{top * frac:g}</text>')
    for i in range(minutes):
        if not totals[i]:
            continue
        x = LEFT + i * bar
        y = TOP + plot_h
        at = (start + timedelta(minutes=i)).strftime("%H:%M")
        label = ", ".join(f"{series[n][i]} {n}" for n in COLOURS if series[n][i])
        parts.append(f"<g><title>{escape(at)} UTC: {escape(label)}</title>")
        for name, colour in COLOURS.items():
            n = series[name][i]
            if n:
                h = plot_h * n / top
                y -= h
                parts.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(bar - 0.5, 0.5):.2f}" height="{h:.2f}" '
                             f'fill="{colour}"/>')
        parts.append("</g>")
    ticks = 6
    for k in range(ticks + 1):
        i = round((minutes - 1) * k / ticks)
        x = LEFT + (i + 0.5) * bar
        at = (start + timedelta(minutes=i)).strftime("%H:%M")
        anchor = "start" if k == 0 else "end" if k == ticks else "middle"
        parts.append(f'<text x="{x:.1f}" y="{H - 8}" text-anchor="{anchor}">{at}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
