"""Terminal charts and sparklines: golden output, the together CLI's layout, NaN and log."""

from __future__ import annotations

import math
import re
import time

import pytest

from tests.test_views_data import check_golden, history
from watcherd.model import MetricRow
from watcherd.views.charts import NO_PLOTTABLE, render_charts, sparkline

HEADER = re.compile(r"^  (\S+)  \((\d+) – (\d+)\)  (\S+) → (\S+)(  .*)?$")
FINITE = [
    {"train/global_step": 1, "train/epoch": 0.1, "train/loss": 2.43, "timestamp": 1},
    {"train/global_step": 2, "train/epoch": 0.2, "train/loss": 2.11, "timestamp": 2},
    {"train/global_step": 3, "train/epoch": 0.3, "train/loss": 1.98, "timestamp": 3},
    {"train/global_step": 3, "train/epoch": 0.3, "eval/loss": 2.05, "timestamp": 4},
]


def _charts(text: str) -> list[list[str]]:
    """The output split into charts, each a list of lines."""
    return [chunk.split("\n") for chunk in text.split("\n\n")]


@pytest.mark.parametrize("width", [80, 120])
def test_golden_charts(width: int) -> None:
    """The fixed history (with a NaN and a log-scale key) renders exactly as stored."""
    check_golden(f"charts_{width}.txt", render_charts(history(), width=width, color=False))


@pytest.mark.parametrize("width", [80, 120])
def test_golden_sparklines(width: int) -> None:
    """Sparklines of the fixed history render exactly as stored."""
    rows = [r for r in history() if "train/loss" in r]
    xs = [float(r["train/global_step"]) for r in rows]
    text = sparkline([r["train/loss"] for r in rows], width - 48, xs=xs)
    check_golden(f"sparkline_{width}.txt", text)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_structure_matches_cli(width: int) -> None:
    """Each chart: CLI header, six `┼` rows, a `└` axis with three `┬` ticks, step labels."""
    for lines in _charts(render_charts(history(), width=width, color=False)):
        assert HEADER.match(lines[0]), lines[0]
        body, axis, labels = lines[1:7], lines[7], lines[8]
        assert len(lines) == 9
        assert all(len(row) >= 9 and row[8] == "┼" for row in body)
        assert axis.startswith(" " * 8 + "└") and len(axis) == 9 + max(20, width - 48)
        assert axis.count("┬") + axis.count("┼") == 3
        assert labels.split() == [str(int(s)) for s in labels.split()]


def test_keys_in_first_seen_order_and_skipped() -> None:
    """One chart per key in first-seen order; step, epoch and timestamp keys never chart."""
    rows: list[MetricRow] = [
        {"train/global_step": 1, "timestamp": 5, "b/x_step": 1, "a/loss": 1.0},
        {"train/global_step": 2, "z/value": 3.0, "a/loss": 2.0, "c/n_epoch": 1, "flag": True},
    ]
    headers = [c[0].split()[0] for c in _charts(render_charts(rows, width=80, color=False))]
    assert headers == ["a/loss", "z/value"]


def test_identical_to_cli_for_finite_history() -> None:
    """For a finite, linear history our text equals the together CLI's, line for line."""
    pytest.importorskip("rich")
    console_mod = pytest.importorskip("rich.console")
    plots = pytest.importorskip("together.lib.cli.components.plot_finetune_metrics")
    rows = [{k: v for k, v in r.items() if k != "train/grad_norm"} for r in history(nan_at=None)]
    for width in (80, 120):
        console = console_mod.Console(width=width, color_system=None, force_terminal=False)
        with console.capture() as captured:
            console.print(plots.metrics_ascii_charts(rows, width=width - 48))
        theirs = [line.rstrip() for line in captured.get().rstrip("\n").split("\n")]
        ours = render_charts(rows, width=width, color=False).split("\n")
        assert len(ours) == len(theirs)
        for mine, cli in zip(ours, theirs, strict=True):
            if mine.lstrip()[:1].isdigit() and "┼" not in mine:  # tick labels
                assert mine.split()[:2] == cli.split()[:2]  # CLI overshoots the last one
            else:
                assert mine == cli


def test_last_tick_is_last_step() -> None:
    """The right tick names the last step (the CLI names one grid step further)."""
    labels = _charts(render_charts(history(), width=80, color=False))[0][8]
    assert labels.split()[::2] == ["1", "40"]


def test_nan_is_a_marked_dip_and_named_in_header() -> None:
    """A NaN drops the line to the axis, marks it `┴` and names its step in the header."""
    chart = _charts(render_charts(history(), width=80, color=False))[0]
    assert chart[0].endswith("NaN at step 17")
    assert "┴" in chart[7]


def test_nan_in_dense_history_stays_visible() -> None:
    """One NaN among 20,000 points still reaches the axis, though columns are sampled."""
    rows: list[MetricRow] = [
        {"train/global_step": i, "train/loss": 1.0 + (i % 7) / 10} for i in range(20_000)
    ]
    rows[12_345]["train/loss"] = math.nan
    chart = _charts(render_charts(rows, width=80, color=False))[0]
    assert "┴" in chart[7] and "NaN at step 12345" in chart[0]


def test_log_scale_is_announced() -> None:
    """A key whose positive values span over 100× is drawn on a log axis, marked `(log)`."""
    headers = [c[0] for c in _charts(render_charts(history(), width=80, color=False))]
    assert [h.split()[0] for h in headers if "(log)" in h] == ["train/grad_norm"]


def test_colour_off_has_no_escape_codes_and_on_has_them() -> None:
    """ANSI codes appear only with color=True, cycling series colours."""
    assert "\x1b" not in render_charts(history(), width=100, color=False)
    coloured = render_charts(history(), width=100, color=True)
    assert "\x1b[37m" in coloured and "\x1b[32m" in coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    assert plain == render_charts(history(), width=100, color=False)


def test_empty_and_unplottable() -> None:
    """No rows gives "" (the CLI prints its own message); rows without series say so."""
    assert render_charts([], width=80, color=False) == ""
    rows: list[MetricRow] = [{"train/global_step": 1, "train/epoch": 0.1, "timestamp": 1}]
    assert render_charts(rows, width=80, color=False) == NO_PLOTTABLE


def test_narrow_terminal_keeps_minimum_plot_width() -> None:
    """Below 68 columns the plot stays 20 columns wide."""
    axis = _charts(render_charts(FINITE, width=30, color=False))[0][7]
    assert len(axis) == 9 + 20


def test_single_point_and_all_nan_series() -> None:
    """A one-point series draws a flat line; an all-NaN series draws only dips."""
    rows: list[MetricRow] = [
        {"train/global_step": 5, "a": 1.5},
        {"train/global_step": 6, "b": math.nan},
        {"train/global_step": 7, "b": math.nan},
    ]
    first, second = _charts(render_charts(rows, width=80, color=False))
    assert "(5 – 5)" in first[0] and "─" in first[6]
    assert "NaN at steps 6, 7" in second[0]


def test_sparkline_marks_nan_and_ends() -> None:
    """A sparkline shows `×` at a NaN, spans `width` columns and ends `first → last`."""
    line = sparkline([3.0, 2.0, math.nan, 1.0], 8)
    assert line.startswith("█") and "×" in line[:8] and line.endswith("  3 → 1")
    assert len(line) == 8 + len("  3 → 1")
    assert sparkline([], 5) == "       -"


def test_two_hundred_thousand_rows_render_quickly() -> None:
    """A 200,000-step history charts in seconds of CPU (a guard against a quadratic path;
    the speed itself is a `make bench` figure). CPU time, so a loaded machine does not fail it."""
    rows = [r for step in range(200_000) for r in _big_row(step)]
    started = time.process_time()
    text = render_charts(rows, width=120, color=False)
    assert time.process_time() - started < 3.0
    assert len(_charts(text)) == 3


def _big_row(step: int) -> list[MetricRow]:
    """A train row at `step`, plus an eval row every 100 steps."""
    row: MetricRow = {"train/global_step": step, "train/loss": 2 / (1 + step / 1000)}
    row["train/grad_norm"] = 1.0 + step % 13
    return [row, {"train/global_step": step, "eval/loss": 1.0}] if step % 100 == 0 else [row]
