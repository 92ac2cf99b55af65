"""The chart engine: sample a series onto plot columns, quantize, draw box characters.

It follows the `together` CLI's engine (SDK 3.1.1, `lib/cli/components/plots`):
points linearly interpolated onto a uniform x grid, six y slots from the sampled
values, NaN and -inf drawn as a dip to the x axis (marked `┴`), +inf as a spike to the
top row, and the last column left blank because each column draws the step to the next.
Two deliberate differences: a NaN never falls between grid columns (its column is
marked whatever the sampling), and the x tick labels are the steps their columns
stand for (the CLI labels the right end one grid step past the data).
"""

# No `from __future__ import annotations`: see `watcherd.model` (named tuples).

import math
import sys
from bisect import bisect_left
from collections.abc import Sequence
from itertools import compress
from operator import le, not_
from typing import Final, NamedTuple

DIP: Final = -1  # slot of a NaN or -inf column: the line drops to the x axis
SPIKE: Final = -2  # slot of a +inf column: the line climbs to the top row


class Chart(NamedTuple):
    """A drawn chart: text rows and, per cell, whether it belongs to the line."""

    rows: list[str]  # height body rows, the axis row, the tick label row
    line_cells: list[list[bool]]  # per body row, per column: part of the line


def should_log(values: Sequence[float], *, finite: bool = False) -> bool:
    """True when the positive values span more than 100×, as in the CLI."""
    if values and (finite or math.isfinite(sum(values))):
        low = min(values)
        if low > 0:
            return len(values) > 1 and max(values) / low > 100
    positive = list(filter((0.0).__lt__, values))
    return len(positive) > 1 and max(positive) / min(positive) > 100


def uniform(low: float, high: float, count: int) -> list[float]:
    """`count` evenly spaced values from low to high, both ends exact."""
    if count <= 1:
        return [low]
    return [lerp(low, high, i / (count - 1)) for i in range(count - 1)] + [high]


def lerp(low: float, high: float, t: float) -> float:
    """The value a fraction `t` of the way from low to high, finite for finite ends.

    `high - low` overflows when the ends lie far apart (±1.8e308), so that case
    weighs the ends separately instead.
    """
    span = high - low
    if math.isfinite(span):
        return low + span * t
    return low * (1.0 - t) + high * t


def fraction(value: float, low: float, high: float) -> float:
    """How far `value` lies from low towards high (0..1 inside), without overflow."""
    if high == low:
        return 0.0
    return (value / 2 - low / 2) / (high / 2 - low / 2)


def pow10(exponent: float) -> float:
    """10 ** exponent, the largest float instead of an OverflowError."""
    try:
        return float(10.0**exponent)
    except OverflowError:
        return sys.float_info.max


def sample_columns(
    xs: Sequence[float],
    ys: Sequence[float],
    width: int,
    *,
    ascending: bool = False,
    finite: bool = False,
) -> list[float]:
    """The series interpolated at `width` evenly spaced steps; NaN marks a dip column."""
    order = None if ascending else _sorted_order(xs)
    sx = [xs[i] for i in order] if order is not None else xs
    sy = [ys[i] for i in order] if order is not None else ys
    grid = uniform(sx[0], sx[-1], width)
    columns = [_value_at(sx, sy, x) for x in grid]
    if not (finite or math.isfinite(sum(sy))):
        _mark_non_finite(columns, sx, sy)
    return columns


def _sorted_order(xs: Sequence[float]) -> list[int] | None:
    """None when xs are already ascending, else a stable sorting permutation."""
    if all(map(le, xs, xs[1:])):
        return None
    return sorted(range(len(xs)), key=xs.__getitem__)


def _value_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Linear interpolation at x; next to a non-finite point, the closer neighbour."""
    pos = bisect_left(xs, x)
    if pos == 0:
        return ys[0]
    if pos == len(xs):
        return ys[-1]
    if xs[pos] == x:
        return ys[pos]
    left_x, left_y, right_x, right_y = xs[pos - 1], ys[pos - 1], xs[pos], ys[pos]
    if not (math.isfinite(left_y) and math.isfinite(right_y)):
        return left_y if x - left_x <= right_x - x else right_y
    return lerp(left_y, right_y, (x - left_x) / (right_x - left_x))


def _mark_non_finite(columns: list[float], xs: Sequence[float], ys: Sequence[float]) -> None:
    """Give every NaN or infinity its nearest column, however dense the series."""
    width, low, high = len(columns), xs[0], xs[-1]
    for i in compress(range(len(ys)), map(not_, map(math.isfinite, ys))):
        col = round((xs[i] - low) / (high - low) * (width - 1)) if high > low else 0
        columns[col] = ys[i]


def log_scale(columns: list[float]) -> list[float]:
    """log10 of each finite column; zero and negatives sit two decades under the least."""
    positive = [v for v in columns if math.isfinite(v) and v > 0]
    least = min(positive) if positive else 1e-8
    floor = least * 0.01 or least  # a denormal's hundredth is 0.0, whose log is undefined
    return [math.log10(max(v, floor)) if math.isfinite(v) else v for v in columns]


def quantize(columns: Sequence[float], height: int) -> tuple[list[int], list[float]]:
    """Each column's y slot (0 = bottom; DIP, SPIKE) and the slots' values, bottom up."""
    finite = [v for v in columns if math.isfinite(v)]
    levels = uniform(min(finite), max(finite), height) if finite else [0.0] * height
    slots = [_slot(v, levels) for v in columns]
    return slots, levels


def _slot(value: float, levels: list[float]) -> int:
    """Index of the nearest level (the lowest one on a tie), or a sentinel."""
    if math.isnan(value) or value == -math.inf:
        return DIP
    if value == math.inf:
        return SPIKE
    return min(range(len(levels)), key=lambda i: abs(levels[i] / 2 - value / 2))


def draw(slots: list[int], y_labels: list[str], x_labels: list[str], label_w: int) -> Chart:
    """Draw the body rows (top first), the `└┬─┴` axis and the tick labels."""
    height, width = len(y_labels), len(slots)
    body = [[" "] * width for _ in range(height)]
    dips: set[int] = set()
    for col in range(width - 1):
        _draw_step(body, col, slots[col], slots[col + 1], dips)
    cells = [[ch != " " for ch in row] for row in body]
    rows = [
        _fit_label(label, label_w) + "┼" + "".join(row)
        for label, row in zip(reversed(y_labels), body, strict=True)
    ]
    rows.extend(_x_axis(width, label_w, x_labels, dips))
    return Chart(rows, cells)


def _vertical(body: list[list[str]], col: int, top: int, bottom: int) -> None:
    """A `│` in `col` on every row strictly between top and bottom (screen rows)."""
    for row in range(top + 1, bottom):
        body[row][col] = "│"


def _draw_step(body: list[list[str]], col: int, cur: int, nxt: int, dips: set[int]) -> None:
    """Draw the line from this column's slot to the next column's, as the CLI does."""
    height = len(body)
    if cur == nxt and cur in (DIP, SPIKE):
        return
    if DIP in (cur, nxt):
        dips.add(col)
        other = nxt if cur == DIP else cur
        row = 0 if other == SPIKE else height - 1 - other
        body[row][col] = "╭" if cur == DIP else "╮"
        _vertical(body, col, row, height)
    elif cur == SPIKE:
        row = height - 1 - nxt
        _vertical(body, col, -1, row)
        body[row][col] = "╰"
    elif nxt == SPIKE:
        row = height - 1 - cur
        _vertical(body, col, -1, row)
        body[row][col] = "╯"
    elif cur == nxt:
        body[height - 1 - cur][col] = "─"
    else:
        here, there = height - 1 - cur, height - 1 - nxt
        body[here][col] = "╮" if cur > nxt else "╯"
        body[there][col] = "╰" if cur > nxt else "╭"
        _vertical(body, col, min(here, there), max(here, there))


def _fit_label(label: str, width: int) -> str:
    """Right-justify a y label, truncating an over-long one with `...`."""
    if len(label) > width:
        label = label[: max(0, width - 3)] + "..."
    return label.rjust(width)


def tick_columns(width: int, count: int = 3) -> list[int]:
    """The columns of the x ticks: both ends and evenly between."""
    if width <= 1 or count < 2:
        return [0]
    return [round(i * (width - 1) / (count - 1)) for i in range(count)]


def _x_axis(width: int, label_w: int, labels: list[str], dips: set[int]) -> list[str]:
    """The `└──┬──┴──┬` border (┴ where a dip meets it) and the centred tick labels."""
    ticks = tick_columns(width, len(labels))
    border = ["─"] * width
    for col in ticks:
        border[col] = "┬"
    for col in dips:
        border[col] = "┼" if col in ticks else "┴"
    line = [" "] * (width + label_w + 1)
    for col, label in zip(ticks, labels, strict=True):
        start = max(0, min(label_w + 1 + col - len(label) // 2, len(line) - len(label)))
        line[start : start + len(label)] = label
    return [" " * label_w + "└" + "".join(border), "".join(line)]
