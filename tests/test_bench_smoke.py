"""Smoke tests for the benchmark code: it runs and reports, without timing assertions."""

from __future__ import annotations

from pathlib import Path

from bench import incremental, startup
from bench.__main__ import main
from bench.table import Row, render


def test_incremental_figure_reports_row_counts() -> None:
    """The cheapest figure polls a tiny job to its end and counts rows both ways."""
    (row,) = incremental.figure(30)
    assert row.extra["stored"] > 0
    assert row.extra["transferred"] >= row.extra["stored"]
    assert row.extra["polls"] > 1


def test_main_writes_the_table_and_json(tmp_path: Path, capsys: object) -> None:
    """`python -m bench --quick --only incremental` prints a table and writes JSON."""
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "incremental", "--output", str(out)]) == 0
    assert '"figure": "incremental fetch' in out.read_text(encoding="utf-8")


def test_render_aligns_every_column() -> None:
    """Rows without a baseline show dashes for baseline and ratio."""
    text = render([Row("x", 1.0, None, "<= 1", True), Row("y", 2.0, 4.0, "<= 1x", True)])
    lines = text.splitlines()
    assert lines[2].split()[1:4] == ["1", "-", "-"]
    assert "0.50x" in lines[3]


def test_startup_figure_reports_three_rows() -> None:
    """The start-up figure runs on a tiny history: READY with and without rows, until-done."""
    rows = startup.figure(50, 1)
    assert [r.figure.split(",")[0] for r in rows] == [
        "daemon start (READY)",
        "first start after upgrade",
        "run --until-done",
    ]
    assert rows[0].baseline is not None and rows[0].extra["cpu_to_ready"] > 0
