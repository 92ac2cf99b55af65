"""The alert views and the daemon's alert counts: tables, JSON, status line, Prometheus."""

from __future__ import annotations

from tests.test_ops_metrics import parse
from watcherd.daemon.prometheus import render
from watcherd.daemon.status import Snapshot, status_line
from watcherd.model import Alert, CancelRecord, JobOverview
from watcherd.views.alerts import alerts_json, render_alerts
from watcherd.views.listing import render_list
from watcherd.views.show import render_show

NOW = 1_779_196_000.0
NAN = Alert(
    "ft-nan", "nonfinite", 1, "cancel", NOW - 300, None,
    {"message": "train/loss is NaN at step 122", "step": 122, "key": "train/loss",
     "value": float("nan"), "best": None, "threshold": None},
)  # fmt: skip
QUEUE = Alert(
    "ft-q", "queued_long", 2, "alert", NOW - 7200, NOW - 60,
    {"message": "queued for 61m (limit 60m), queue depth 3", "queue_depth": 3.0, "value": 3660.0},
)  # fmt: skip
CANCEL = CancelRecord(
    "ft-nan", "watcherd", "nonfinite", "train/loss is NaN at step 122", NOW - 300,
    "requested", 1, NOW - 299, NOW - 298, None,
)  # fmt: skip


def _job(**changes: object) -> JobOverview:
    base = dict.fromkeys(
        ("note", "status_since", "step", "train_loss", "eval_loss", "seconds_remaining"), None
    )
    base |= dict.fromkeys(("last_poll_at", "last_error", "model", "model_output_name"), None)
    fields = {"job_id": "ft-nan", "watched": True, "status": "running", "hooks": {}} | base
    return JobOverview(**(fields | changes))  # type: ignore[arg-type]


def test_alert_table_names_rule_state_and_message() -> None:
    """Open alerts read `open`, resolved ones how long they lasted; cancel rules say so."""
    text = render_alerts([QUEUE, NAN], now=NOW, color=False, width=140)
    lines = text.splitlines()
    assert lines[0].split() == ["JOB", "RULE", "#", "STATE", "OPENED", "MESSAGE"]
    assert "resolved after 1h 59m" in lines[1] and "queue depth 3" in lines[1]
    assert "nonfinite (cancel)" in lines[2] and "open" in lines[2]


def test_alert_json_is_strict() -> None:
    """NaN values become null; ids and states are spelled out."""
    (found,) = alerts_json([NAN])
    assert found["id"] == "ft-nan:alert.nonfinite:1"
    assert (found["state"], found["value"], found["action"]) == ("open", None, "cancel")


def test_list_has_alerts_eta_source_and_the_cancel() -> None:
    """The ALERTS cell names open rules, the ETA its source, and a cancel gets its own line."""
    job = _job(alerts=("nonfinite",), eta_at=NOW + 720, eta_source="first_epoch", cancel=CANCEL)
    text = render_list([job], now=NOW, color=False, width=200)
    assert "nonfinite!" in text
    assert "12m (first epoch)" in text
    assert "cancel requested by watcherd (nonfinite): train/loss is NaN" in text


def test_show_has_the_alert_history() -> None:
    """`show` lists every episode of the job under `Alerts`."""
    job = _job(alerts=("nonfinite",), cancel=CANCEL)
    text = render_show(job, None, [], [], [], now=NOW, color=False, width=120, alerts=[NAN])
    assert "Alerts" in text and "train/loss is NaN at step 122" in text
    assert "cancel requested by watcherd" in text


def test_status_line_and_prometheus_count_open_alerts() -> None:
    """The systemd status line and `watcherd_alerts_open{rule}` count open episodes."""
    snap = Snapshot(jobs={"running": 2}, alerts={"stalled": 1, "nonfinite": 2})
    assert status_line(snap).endswith("; 3 alerts open (2 nonfinite, 1 stalled)")
    series = parse(render(snap, started_at=NOW))
    assert series['watcherd_alerts_open{rule="nonfinite"}'] == 2
    assert series['watcherd_alerts_open{rule="stalled"}'] == 1
    assert series['watcherd_alerts_open{rule="overrun"}'] == 0
