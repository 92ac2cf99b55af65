"""Inline SVG line charts for the HTML report: axes, ticks, polylines, legend, NaN marks.

Long histories are cut down first: at most `MAX_POINTS` points per polyline, keeping
each bucket's lowest and highest value so spikes survive. Every text is escaped.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

from watcherd.views._grid import fraction, pow10, should_log, uniform

MAX_POINTS: Final = 1000
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 56
_LOG_NOTE: Final = " (log scale)"
COLOURS: Final = ("#1f6feb", "#d9480f", "#2f9e44", "#ae3ec9", "#0c8599")


@dataclass(frozen=True, slots=True)
class Line:
    """One polyline: a label for the legend and its points in step order."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]


def downsample(
    xs: Sequence[float], ys: Sequence[float], limit: int = MAX_POINTS
) -> tuple[list[float], list[float]]:
    """At most `limit` finite points: each bucket's min and max, in step order."""
    pairs = sorted((x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
    if len(pairs) <= limit:
        return [x for x, _ in pairs], [y for _, y in pairs]
    buckets = max(1, limit // 2)
    out: list[tuple[float, float]] = []
    for b in range(buckets):
        chunk = pairs[b * len(pairs) // buckets : (b + 1) * len(pairs) // buckets]
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        out.extend(sorted({low, high}))
    return [x for x, _ in out], [y for _, y in out]


def chart(title: str, lines: Sequence[Line]) -> str:
    """One `<svg>`: title, y and x ticks, a polyline per line, legend, NaN marks."""
    values = [y for line in lines for y in line.ys if math.isfinite(y)]
    steps = [x for line in lines for x in line.xs]
    if not values or not steps:
        return ""
    log = should_log(values)
    scale = _Scale(min(steps), max(steps), values, log)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text class="title" x="{LEFT}" y="16">{escape(title)}{_LOG_NOTE if log else ""}</text>',
        *_axes(scale),
    ]
    for i, line in enumerate(lines):
        parts.extend(_line(line, COLOURS[i % len(COLOURS)], i, scale))
    parts.append("</svg>")
    return "\n".join(parts)


class _Scale:
    """Maps steps and values to SVG coordinates (log10 values when `log`)."""

    def __init__(self, x_low: float, x_high: float, values: list[float], log: bool) -> None:
        self.log = log
        shown = [math.log10(v) for v in values if v > 0] if log else values
        self.x_low, self.x_high = x_low, x_high if x_high > x_low else x_low + 1
        self.y_low, self.y_high = min(shown), max(shown)
        if self.y_high <= self.y_low:  # one value: a band around it, within the float range
            pad = max(1.0, abs(self.y_low) * 1e-6)
            self.y_low = max(self.y_low - pad, -sys.float_info.max)
            self.y_high = min(self.y_high + pad, sys.float_info.max)

    def x(self, step: float) -> float:
        """The SVG x of a step."""
        span = WIDTH - LEFT - RIGHT
        return LEFT + fraction(step, self.x_low, self.x_high) * span

    def y(self, value: float) -> float:
        """The SVG y of a value (values ≤ 0 on a log axis sit on the bottom)."""
        if self.log:
            value = math.log10(value) if value > 0 else self.y_low
        span = HEIGHT - TOP - BOTTOM
        return HEIGHT - BOTTOM - fraction(value, self.y_low, self.y_high) * span


def _axes(scale: _Scale) -> list[str]:
    """Axis lines, five y ticks with labels and five x ticks with step labels."""
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    out = [f'<path class="axis" d="M{LEFT} {TOP}V{bottom}H{right}"/>']
    for level in uniform(scale.y_low, scale.y_high, 5):
        value = pow10(level) if scale.log else level
        y = _n(scale.y(value))
        out.append(f'<path class="grid" d="M{LEFT} {y}H{right}"/>')
        out.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y}" text-anchor="end">{value:.3g}</text>'
        )
    for step in uniform(scale.x_low, scale.x_high, 5):
        x = _n(scale.x(step))
        out.append(f'<path class="axis" d="M{x} {bottom}v4"/>')
        out.append(
            f'<text class="tick" x="{x}" y="{bottom + 16}" text-anchor="middle">{int(step)}</text>'
        )
    return out


def _line(line: Line, colour: str, index: int, scale: _Scale) -> list[str]:
    """The polyline, its legend entry and a red mark on the axis per NaN or inf."""
    xs, ys = downsample(line.xs, line.ys)
    points = " ".join(f"{_n(scale.x(x))},{_n(scale.y(y))}" for x, y in zip(xs, ys, strict=True))
    legend_x, legend_y = LEFT + 170 * index, HEIGHT - 8  # under the x tick labels
    out = [
        f'<polyline class="series" stroke="{colour}" points="{points}"/>',
        f'<rect x="{legend_x}" y="{legend_y - 4}" width="12" height="3" fill="{colour}"/>',
        f'<text class="legend" x="{legend_x + 16}" y="{legend_y}">{escape(line.label)}</text>',
    ]
    bad = [(x, y) for x, y in zip(line.xs, line.ys, strict=True) if not math.isfinite(y)]
    for x, y in bad[:200]:
        cx = _n(scale.x(x))
        out.append(
            f'<circle class="nan" cx="{cx}" cy="{HEIGHT - BOTTOM}" r="3">'
            f"<title>{escape(line.label)}: {y} at step {int(x)}</title></circle>"
        )
    return out


def _n(value: float) -> str:
    """A coordinate with one decimal, no trailing `.0`."""
    return f"{value:.1f}".removesuffix(".0")
