"""`list`, `show` and `hooks` views: odd statuses, missing data, NaN, huge numbers, JSON."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.test_views_data import (
    NOW,
    RAW_JOB,
    check_golden,
    delivery,
    history,
    overview,
    transitions,
)
from watcherd.model import JobOverview, phases
from watcherd.views.hooks import deliveries_json, render_deliveries
from watcherd.views.listing import eta, list_json, render_list
from watcherd.views.show import render_show, show_json

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jobs() -> list[JobOverview]:
    """A mixed fleet: live, completed with auth trouble, never polled, odd and huge."""
    return [
        overview(),
        overview(
            "ft-0002",
            status="completed",
            note=None,
            seconds_remaining=None,
            last_error="401 Unauthorized: check TOGETHER_API_KEY",
            hooks={"delivered": 1, "dead": 1, "pending": 2},
        ),
        overview(
            "ft-0003",
            status=None,
            status_since=None,
            step=None,
            train_loss=None,
            eval_loss=None,
            seconds_remaining=None,
            last_poll_at=None,
            hooks={},
            watched=False,
        ),
        overview("ft-0004", status="reticulating", train_loss=math.nan, eval_loss=math.inf),
        overview("ft-0005", step=10**12, train_loss=1e300, eval_loss=10**400, note="x" * 80),
    ]


@pytest.mark.parametrize("width", [80, 120])
def test_golden_list(width: int) -> None:
    """The fleet's table renders exactly as stored."""
    check_golden(f"list_{width}.txt", render_list(_jobs(), now=NOW, color=False, width=width))


@pytest.mark.parametrize("width", [80, 120])
def test_golden_show(width: int) -> None:
    """One job's page (fields, timeline, sparklines, hooks) renders exactly as stored."""
    text = render_show(
        overview(status="completed"),
        RAW_JOB,
        transitions(),
        history(),
        [delivery()],
        now=NOW,
        color=False,
        width=width,
    )
    check_golden(f"show_{width}.txt", text)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_list_fits_width(width: int) -> None:
    """No line of the table is wider than the terminal."""
    lines = render_list(_jobs(), now=NOW, color=False, width=width).split("\n")
    assert max(len(line) for line in lines) <= width


def test_list_states() -> None:
    """Unknown statuses show verbatim, never-polled jobs say so, NaN and huge numbers print."""
    text = render_list(_jobs(), now=NOW, color=False, width=200)
    assert "reticulating" in text and "never" in text and "(unwatched)" in text
    assert "nan" in text and "inf" in text and "1e+300" in text and "1.000e+400" in text
    assert "1 dead!, 2 pending, 1 delivered" in text
    assert "  ! 401 Unauthorized" in text


def test_list_colours_statuses() -> None:
    """Yellow live, green completed, red failures; colour off prints no escape codes."""
    jobs = [overview(status=s) for s in ("running", "completed", "error", "missing")]
    coloured = render_list(jobs, now=NOW, color=True, width=200)
    assert "\x1b[33mrunning" in coloured and "\x1b[32mcompleted" in coloured
    assert "\x1b[31merror" in coloured and "\x1b[31mmissing" in coloured
    assert "\x1b" not in render_list(jobs, now=NOW, color=False, width=200)
    assert ANSI.sub("", coloured) == render_list(jobs, now=NOW, color=False, width=200)


def test_eta_counts_down_from_last_poll() -> None:
    """ETA is the last estimate less the time since that poll; none for final jobs."""
    assert eta(overview(seconds_remaining=600.0, last_poll_at=NOW - 120), NOW) == "8m"
    assert eta(overview(seconds_remaining=60.0, last_poll_at=NOW - 120), NOW) == "soon"
    assert eta(overview(status="completed"), NOW) == "-"


def test_list_json_is_strict_json() -> None:
    """`list --json` has the documented keys, and NaN or infinity become null."""
    data = list_json(_jobs())
    json.dumps(data, allow_nan=False)
    assert set(data[0]) == {
        "job_id", "note", "watched", "status", "status_since", "step", "train_loss",
        "eval_loss", "seconds_remaining", "last_poll_at", "last_error", "model",
        "model_output_name", "hooks", "reason", "price", "token_count", "alerts", "eta",
        "cancel",
    }  # fmt: skip
    assert data[3]["train_loss"] is None and data[3]["eval_loss"] is None
    assert data[2]["status"] is None and data[2]["last_poll_at"] is None
    assert data[0]["last_poll_at"] == "2026-05-19T14:12:20.000000Z"


def test_show_json_and_phases() -> None:
    """`show --json` names phases from the timeline and is strict JSON."""
    data = show_json(
        overview(status="completed"), RAW_JOB, transitions(), history(), [delivery()], now=NOW
    )
    json.dumps(data, allow_nan=False)
    assert data["phases"] == {
        "queue_wait": 600.0,
        "training": 2400.0,
        "upload": 300.0,
        "total": 3300.0,
    }
    assert data["metrics"]["train/loss"]["first"] == pytest.approx(2.545, abs=1e-3)
    assert data["fields"]["training type"] == "LoRA (r 64, alpha 128, dropout 0.0)"
    assert data["deliveries"][0]["state"] == "dead"


def test_live_phase_runs_to_now() -> None:
    """The current status of a live job counts up to `now`."""
    live = transitions()[:3]
    assert phases(live, "running", NOW)["training"] == NOW - live[2].observed_at


def test_show_never_polled_job() -> None:
    """A job with no poll, no transitions and no metrics still renders."""
    job = _jobs()[2]
    text = render_show(job, None, [], [], [], now=NOW, color=False, width=80)
    assert "never polled" in text and "no transitions" in text


def test_show_strips_control_characters() -> None:
    """Remote text cannot smuggle terminal escapes into `show`."""
    raw = dict(RAW_JOB, model_output_name="evil\x1b[2Jname\nnext")
    text = render_show(overview(), raw, [], [], [], now=NOW, color=False, width=80)
    assert "\x1b" not in text and "evil [2Jname next" in text


def test_deliveries_table_and_json() -> None:
    """Deliveries list id, job, hook, event, state, attempts and last error; JSON is stable."""
    items = [delivery(), delivery("ft-0002", state="failed", next_attempt_at=NOW + 30)]
    text = render_deliveries(items, now=NOW, color=False)
    assert "ft-0001:completed:deploy" in text and "exit status 1 boom" in text
    assert "failed (next in 30s)" in text
    assert render_deliveries([], now=NOW, color=False) == "No hook deliveries."
    data = deliveries_json(items)
    assert data[1]["next_attempt_at"] == "2026-05-19T14:13:50.000000Z"
    assert list(data[0]) == [
        "id", "job_id", "hook", "event", "previous_status", "state", "attempts",
        "occurred_at", "next_attempt_at", "updated_at", "last_error", "output_tail",
    ]  # fmt: skip
