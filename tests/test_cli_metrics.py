"""`watcherd metrics` through the real CLI, cross-checked against the real `together` CLI."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.cliharness import Recorded, recorded, together, watcherd
from watcherd.model import MetricRow

#: A filter case: its name, and the CLI flags it makes from the job's rows.
Case = tuple[str, Callable[[list[MetricRow]], list[str]]]
PLUS2 = timezone(timedelta(hours=2))
MINUS0530 = timezone(-timedelta(hours=5, minutes=30))


def _at(rows: list[MetricRow], share: float, tz: timezone | None = UTC) -> str:
    """The timestamp of the row `share` of the way in, as ISO text (microseconds, truncated)
    in zone `tz` (None: naive, meaning UTC)."""
    ns = int(rows[int(share * (len(rows) - 1))]["timestamp"])
    when = datetime.fromtimestamp(ns // 10**9, tz=UTC) + timedelta(microseconds=ns % 10**9 // 1000)
    if tz is None:
        return when.replace(tzinfo=None).isoformat(timespec="microseconds")
    return when.astimezone(tz).isoformat(timespec="microseconds")


CASES: list[Case] = [
    ("all", lambda rows: []),
    ("step-range", lambda rows: ["--global-step-from", "10", "--global-step-to", "20"]),
    ("resolution", lambda rows: ["--resolution", "5"]),
    ("resolution-1", lambda rows: ["--resolution", "1"]),
    ("step-resolution", lambda rows: ["--global-step-from", "7", "--resolution", "5"]),
    ("from+02:00", lambda rows: ["--logged-at-from", _at(rows, 0.3, PLUS2)]),
    ("to-05:30", lambda rows: ["--logged-at-to", _at(rows, 0.7, MINUS0530)]),
    (
        "time-range-Z",
        lambda rows: [
            "--logged-at-from",
            _at(rows, 0.1).replace("+00:00", "Z"),
            "--logged-at-to",
            _at(rows, 0.6),
        ],
    ),
    ("naive-utc", lambda rows: ["--logged-at-from", _at(rows, 0.5, None)]),
    ("empty-steps", lambda rows: ["--global-step-from", "20", "--global-step-to", "10"]),
    (
        "everything",
        lambda rows: [
            "--global-step-from",
            "3",
            "--global-step-to",
            "35",
            "--logged-at-from",
            _at(rows, 0.05, PLUS2),
            "--logged-at-to",
            _at(rows, 0.9, MINUS0530),
            "--resolution",
            "7",
        ],
    ),
]
#: Which jobs each case runs on.
GRID = [("sft", name) for name, _ in CASES] + [
    ("dpo", "resolution"),
    ("err", "everything"),
]


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Finished sim jobs, recorded by `watcherd run --until-done`, the sim still serving."""
    with recorded(tmp_path_factory.mktemp("metrics")) as found:
        yield found


@pytest.fixture(scope="module")
def answers(rec: Recorded, tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    """Both CLIs' `--json` output for every (job, case) of the grid, run two at a time."""
    home = tmp_path_factory.mktemp("home")
    flags = dict(CASES)

    def run(item: tuple[str, str]) -> tuple[Any, Any]:
        job_id = rec.ids[item[0]]
        args = flags[item[1]](rec.world.truth(job_id))
        ours = watcherd(rec.config, "metrics", job_id, "--json", *args)
        theirs = together(rec.sim, home, "fine-tuning", "list-metrics", job_id, "--json", *args)
        return ours, theirs

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(GRID, pool.map(run, GRID), strict=True))


def _numeric(rows: list[dict[str, Any]]) -> list[list[tuple[str, float]]]:
    """Rows as (key, float) pairs in order: the SDK's view of the same data."""
    return [[(key, float(value)) for key, value in row.items()] for row in rows]


#: The first of these sets up `answers`: 26 CLI runs (the `together` CLI takes about 1.5 s
#: of CPU to start), which on a loaded 2-core machine outlast the default 120 s.
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("job", "case"), GRID, ids=[f"{j}-{c}" for j, c in GRID])
def test_json_equals_together_list_metrics(answers: dict[Any, Any], job: str, case: str) -> None:
    """`metrics --json` equals `together fine-tuning list-metrics --json`: rows, keys, order."""
    ours, theirs = answers[(job, case)]
    assert ours.returncode == 0, ours.stderr
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    mine, sdk = json.loads(ours.stdout), json.loads(theirs.stdout)
    assert _numeric(mine) == _numeric(sdk)
    if case in ("all", "everything"):
        assert mine, "the case should select some rows"


def test_json_keeps_integer_nanoseconds(rec: Recorded) -> None:
    """`--json` prints timestamps as the exact integers the API sent, not floats."""
    job_id = rec.ids["sft"]
    done = watcherd(rec.config, "metrics", job_id, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows == rec.world.truth(job_id)
    assert all(type(r["timestamp"]) is int and r["timestamp"] > 2**53 for r in rows)
    assert re.search(r'"timestamp": ?\d{19},', done.stdout)


def test_json_writes_nan_literally(rec: Recorded) -> None:
    """A diverged job's `--json` holds the NaN literal, and every other value exactly."""
    job_id = rec.ids["nan"]
    done = watcherd(rec.config, "metrics", job_id, "--json")
    assert done.returncode == 0, done.stderr
    assert "NaN" in done.stdout
    rows = json.loads(done.stdout)
    assert repr(rows) == repr(rec.world.truth(job_id))
    assert any(math.isnan(r.get("train/loss", 0.0)) for r in rows)


def test_logged_at_bounds_are_inclusive_to_the_nanosecond(rec: Recorded) -> None:
    """A bound with nine fractional digits equal to a row's timestamp keeps that row."""
    rows = rec.world.truth(rec.ids["sft"])
    ns = int(rows[10]["timestamp"])
    stamp = datetime.fromtimestamp(ns // 10**9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    exact = f"{stamp}.{ns % 10**9:09d}Z"
    args = ["--logged-at-from", exact, "--logged-at-to", exact]
    done = watcherd(rec.config, "metrics", rec.ids["sft"], "--json", *args)
    assert json.loads(done.stdout) == [r for r in rows if r["timestamp"] == ns]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{sft}", "--resolution", "0"], "must be at least 1"),
        (["{sft}", "--global-step-from", "-1"], "must be at least 0"),
        (["{sft}", "--global-step-to", "ten"], "not an integer"),
        (["{sft}", "--logged-at-from", "garbage"], "--logged-at-from: not an ISO-8601"),
        (["{sft}", "--logged-at-to", "2026-13-45"], "--logged-at-to: not an ISO-8601"),
        (["job-1"], "invalid job ID 'job-1'"),
        (["ft-unknown"], "ft-unknown is not in the database"),
    ],
)
def test_bad_arguments_exit_2(rec: Recorded, args: list[str], message: str) -> None:
    """Bad filters, a malformed ID and an unknown job: exit 2, one clear line, no traceback."""
    argv = [a.format(sft=rec.ids["sft"]) for a in args]
    done = watcherd(rec.config, "metrics", *argv, "--json")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_job_without_rows(rec: Recorded) -> None:
    """A known job with no rows prints `No metrics found for job ID`, or `[]` with --json."""
    job_id = rec.ids["early"]
    done = watcherd(rec.config, "metrics", job_id)
    assert (done.returncode, done.stdout) == (0, f"No metrics found for job {job_id}\n")
    assert watcherd(rec.config, "metrics", job_id, "--json").stdout == "[]\n"


def _drop_log_notes(text: str) -> str:
    """Our output less what we add on purpose: `(log)` header notes and trailing blanks."""
    lines = [line.replace("  (log)", "").rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_chart_width_follows_columns(rec: Recorded, columns: int) -> None:
    """The plot is COLUMNS - 48 wide (at least 20), as in the together CLI; no ANSI off a TTY."""
    done = watcherd(rec.config, "metrics", rec.ids["sft"], env={"COLUMNS": str(columns)})
    assert done.returncode == 0, done.stderr
    axes = {len(line) for line in done.stdout.splitlines() if line.startswith(" " * 8 + "└")}
    assert axes == {8 + 1 + max(20, columns - 48)}
    assert "\x1b[" not in done.stdout


def test_charts_match_together(rec: Recorded, tmp_path: Path) -> None:
    """Our charts draw what `together fine-tuning list-metrics` draws, line for line."""
    job_id = rec.ids["dpo"]
    ours = watcherd(rec.config, "metrics", job_id, env={"COLUMNS": "110"})
    theirs = together(rec.sim, tmp_path, "fine-tuning", "list-metrics", job_id, columns=110)
    assert ours.returncode == 0, ours.stderr
    assert theirs.returncode == 0, theirs.stderr
    assert "  (log)" in ours.stdout  # the one note we add on purpose
    assert _drop_log_notes(ours.stdout) == _drop_log_notes(theirs.stdout)
