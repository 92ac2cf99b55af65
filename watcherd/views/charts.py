"""Terminal line charts and sparklines of metric rows, laid out like the `together` CLI.

`render_charts` draws one chart per metric key (first-seen order), six rows high, for
`watcherd metrics`; `sparkline` draws the one-line form used by `watcherd show`.
Both are pure: rows in, text out, no trailing spaces and no trailing newline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from watcherd.model import MetricRow
from watcherd.views import _grid
from watcherd.views._fmt import paint, safe
from watcherd.views._series import Series, collect_series

#: Columns the CLI keeps for labels and margins: plot width = terminal width - 48.
WIDTH_PADDING: Final = 48
MIN_PLOT_WIDTH: Final = 20
HEIGHT: Final = 6
LABEL_WIDTH: Final = 8
SERIES_COLOURS: Final = ("white", "green", "yellow", "cyan", "magenta")
SPARK_BLOCKS: Final = " ▁▂▃▄▅▆▇█"
SPARK_NAN: Final = "×"
NO_PLOTTABLE: Final = "No plottable metrics found."


def plot_width(terminal_width: int) -> int:
    """The plot body's width for a terminal: width − 48, but at least 20 columns."""
    return max(MIN_PLOT_WIDTH, terminal_width - WIDTH_PADDING)


def render_charts(rows: Sequence[MetricRow], *, width: int, color: bool) -> str:
    """One chart per metric key; "" for no rows, a note when no key is plottable."""
    if not rows:
        return ""
    series = collect_series(rows)
    if not series:
        return NO_PLOTTABLE
    charts = [
        chart(
            s,
            width=plot_width(width),
            colour=SERIES_COLOURS[i % len(SERIES_COLOURS)] if color else None,
        )
        for i, s in enumerate(series)
    ]
    return "\n\n".join(charts)


def header(series: Series, log: bool) -> str:
    """`  key  (first – last step)  first → last`, then `(log)` and NaN notes if any."""
    xs, ys = series.xs, series.ys
    text = f"  {safe(series.key)}  ({_step(xs[0])} – {_step(xs[-1])})  {ys[0]:.4g} → {ys[-1]:.4g}"
    if log:
        text += "  (log)"
    return text + "".join(f"  {note}" for note in non_finite_notes(series))


def non_finite_notes(series: Series) -> list[str]:
    """`NaN at step 7`, `NaN at steps 3, 9`, `inf at 12 steps, first 40`, per kind."""
    by_kind: dict[str, list[str]] = {}
    for x, y in series.non_finite:
        kind = "NaN" if math.isnan(y) else ("inf" if y > 0 else "-inf")
        by_kind.setdefault(kind, []).append(_step(x))
    notes = []
    for kind, steps in by_kind.items():
        if len(steps) == 1:
            notes.append(f"{kind} at step {steps[0]}")
        elif len(steps) <= 3:
            notes.append(f"{kind} at steps {', '.join(steps)}")
        else:
            notes.append(f"{kind} at {len(steps)} steps, first {steps[0]}")
    return notes


def chart(series: Series, *, width: int, colour: str | None) -> str:
    """One series as header plus six-row chart, x axis and tick labels."""
    log = _grid.should_log(series.ys, finite=series.finite)
    columns = _grid.sample_columns(
        series.xs, series.ys, width, ascending=series.ascending, finite=series.finite
    )
    if log:
        columns = _grid.log_scale(columns)
    slots, levels = _grid.quantize(columns, HEIGHT)
    y_labels = [f"{(_grid.pow10(v) if log else v):.3g}" for v in levels]
    xs = series.xs
    low, high = (xs[0], xs[-1]) if series.ascending else (min(xs), max(xs))
    steps = _grid.uniform(low, high, width)
    x_labels = [_step(steps[col]) for col in _grid.tick_columns(width)]
    drawn = _grid.draw(slots, y_labels, x_labels, LABEL_WIDTH)
    lines = [paint(header(series, log), colour, colour is not None)]
    if colour is None:
        lines.extend(row.rstrip() for row in drawn.rows)
        return "\n".join(lines)
    for row, cells in zip(drawn.rows, drawn.line_cells, strict=False):
        lines.append(_paint_row(row, cells, colour))
    lines.extend(paint(row.rstrip(), "dim", True) for row in drawn.rows[HEIGHT:])
    return "\n".join(lines)


def _paint_row(row: str, cells: list[bool], colour: str) -> str:
    """A body row: dim label and `┼`, then runs of line cells in the series colour."""
    label, body = row[: LABEL_WIDTH + 1], row[LABEL_WIDTH + 1 :].rstrip()
    out = [paint(label, "dim", True)]
    start = 0
    for col in range(1, len(body) + 1):
        if col == len(body) or cells[col] != cells[start]:
            out.append(paint(body[start:col], colour if cells[start] else None, True))
            start = col
    return "".join(out)


def sparkline(values: Sequence[float], width: int, *, xs: Sequence[float] | None = None) -> str:
    """Blocks ` ▁▂▃▄▅▆▇█` over `width` columns (× for NaN/inf), then `first → last`.

    Values are placed at `xs` (default: their index) and interpolated onto the columns,
    on a log scale when the positive values span more than 100×.
    """
    if not values:
        return " " * width + "  -"
    points = list(map(float, values))
    steps = list(map(float, xs)) if xs is not None else [float(i) for i in range(len(points))]
    columns = _grid.sample_columns(steps, points, width)
    if _grid.should_log(points):
        columns = _grid.log_scale(columns)
    slots, _ = _grid.quantize(columns, len(SPARK_BLOCKS))
    blocks = "".join(SPARK_BLOCKS[s] if s >= 0 else SPARK_NAN for s in slots)
    return f"{blocks.ljust(width)}  {points[0]:.4g} → {points[-1]:.4g}"


def _step(x: float) -> str:
    """A step as the CLI prints it: the integer part."""
    return str(int(x)) if math.isfinite(x) else str(x)
