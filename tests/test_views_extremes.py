"""Charts, `show` and the report with the largest and smallest numbers a float holds."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from watcherd.model import JobOverview
from watcherd.views._grid import uniform
from watcherd.views.charts import render_charts, sparkline
from watcherd.views.report import ReportJob, render_report
from watcherd.views.show import render_show

BIG = sys.float_info.max
SERIES: dict[str, list[float]] = {
    "both ends of the float range": [BIG, -BIG, BIG, -BIG],
    "the largest integers a float holds": [int(BIG), -int(BIG), 5, 7],
    "denormals beside the largest": [5e-324, 1e-300, BIG, 0.0],
    "all at the largest": [BIG, BIG, BIG],
    "steps at both ends of 64 bits": [1.0, 2.0, 3.0],
}


def rows(name: str) -> list[dict[str, Any]]:
    """Train rows of one case (the steps case spans the whole 64-bit range)."""
    values = SERIES[name]
    steps = [-(2**63), 0, 2**63 - 1] if "steps" in name else range(1, len(values) + 1)
    return [
        {"train/global_step": s, "train/loss": v, "timestamp": i}
        for i, (s, v) in enumerate(zip(steps, values, strict=True))
    ]


def overview() -> JobOverview:
    """A running job whose losses and estimate sit at the float limits."""
    return JobOverview(
        "ft-a", None, True, "running", 1.0, 3, BIG, -BIG, BIG, 2.0, None, None, None, {}
    )


@pytest.mark.parametrize("name", list(SERIES))
def test_extreme_values_chart_without_raising(name: str) -> None:
    """`metrics`, `show` and `report` draw the series; finite labels, no exception."""
    found = rows(name)
    text = render_charts(found, width=100, color=False)
    assert "train/loss" in text and "nan" not in text.split("\n", 1)[1]
    assert "→" in sparkline([float(r["train/loss"]) for r in found], 30)
    job = overview()
    raw = {"total_price": BIG, "learning_rate": -BIG, "queue_depth": 10**400}
    assert "train/loss" in render_show(job, raw, [], found, [], now=3.0, color=False, width=100)
    html = render_report([ReportJob(job, raw, [], found, [])], generated_at=5.0)
    coordinates = re.findall(r' (?:x|y|cx|cy|points|d)="([^"]*)"', html)
    ticks = re.findall(r'class="tick"[^>]*>([^<]*)<', html)
    assert coordinates and ticks
    assert not [text for text in coordinates + ticks if re.search("nan|inf", text)]


def test_uniform_spans_the_whole_float_range() -> None:
    """Evenly spaced values from -max to +max are all finite, ends exact."""
    spaced = uniform(-BIG, BIG, 5)
    assert spaced[0] == -BIG and spaced[-1] == BIG and spaced[2] == 0.0
