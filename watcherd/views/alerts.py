"""`watcherd alerts`, and the alert parts of `list`, `show` and the report.

JSON keys of an alert (stable): id, job_id, rule, episode, action, state (open or
resolved), opened_at, resolved_at (ISO-8601 UTC or null), message, step, key, value,
best, threshold (null when the rule has none; NaN and infinities null), and any
rule-specific extra (queue_depth).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from watcherd.model import Alert, CancelRecord, JobOverview
from watcherd.views._fmt import Cell, Column, ago, duration, finite, iso, real, table

#: How a cancel's state reads.
CANCEL_STATES: Final = {
    "intent": "cancel pending",
    "requested": "cancel requested",
    "skipped": "cancel skipped",
}
#: How `list` and `show` name an ETA's source.
SOURCE_NAMES: Final = {"service": "service", "first_epoch": "first epoch", "step_rate": "rate"}


def render_alerts(alerts: Sequence[Alert], *, now: float, color: bool, width: int) -> str:
    """The alerts table, newest last, or a note when there are none."""
    if not alerts:
        return "No alerts."
    return "\n".join(alert_lines(alerts, now=now, color=color, width=width, job=True))


def alert_lines(
    alerts: Sequence[Alert], *, now: float, color: bool, width: int, job: bool
) -> list[str]:
    """Table lines (header first); `job=False` leaves out the job column (for `show`)."""
    columns = [
        Column("JOB", drop=3),
        Column("RULE"),
        Column("#", right=True, drop=1),
        Column("STATE"),
        Column("OPENED", drop=2),
        Column("MESSAGE", shrink=True),
    ]
    rows = [_cells(a, now) for a in alerts]
    if not job:
        del columns[0]
        for row in rows:
            del row[0]
    return table(columns, rows, color=color, width=width)


def _cells(alert: Alert, now: float) -> list[Cell]:
    if alert.resolved_at is None:
        state: Cell = ("open", "red")
    else:
        state = (f"resolved after {duration(alert.resolved_at - alert.opened_at)}", "green")
    rule = alert.rule + (" (cancel)" if alert.action == "cancel" else "")
    return [
        (alert.job_id, None),
        (rule, None),
        (str(alert.episode), None),
        state,
        (ago(alert.opened_at, now), None),
        (str(alert.details.get("message") or ""), None),
    ]


def alerts_json(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
    """The alerts as JSON-ready dicts (keys in the module docstring)."""
    return [alert_json(a) for a in alerts]


def alert_json(alert: Alert) -> dict[str, Any]:
    """One alert as a JSON-ready dict."""
    details = {k: v for k, v in alert.details.items() if k != "resolution"}
    for key in ("value", "best", "threshold", "queue_depth"):
        if key in details:
            details[key] = finite(details[key])
    return {
        "id": alert.id,
        "job_id": alert.job_id,
        "rule": alert.rule,
        "episode": alert.episode,
        "action": alert.action,
        "state": "open" if alert.resolved_at is None else "resolved",
        "opened_at": iso(alert.opened_at),
        "resolved_at": iso(alert.resolved_at),
        **details,
    }


def alerts_cell(job: JobOverview) -> Cell:
    """`list`'s ALERTS cell: the rules with an open episode, red; `-` when none."""
    if not job.alerts:
        return ("-", None)
    return (", ".join(f"{rule}!" for rule in job.alerts), "red")


def eta_text(job: JobOverview, now: float) -> str | None:
    """`12m (first epoch)`: time left and where the estimate came from; None without one."""
    at = real(job.eta_at)
    if at is None or job.eta_source is None:
        return None
    left = at - now
    shown = duration(left) if left >= 1 else "soon"
    return f"{shown} ({SOURCE_NAMES.get(job.eta_source, job.eta_source)})"


def eta_json(job: JobOverview, now: float | None) -> dict[str, Any] | None:
    """`{at, seconds_remaining, source}` (seconds null without `now`), or None."""
    at = real(job.eta_at)
    if at is None or job.eta_source is None:
        return None
    left = None if now is None else max(0.0, at - now)
    return {"at": iso(at), "seconds_remaining": left, "source": job.eta_source}


def cancel_text(cancel: CancelRecord | None) -> str | None:
    """`cancel requested by watcherd (nonfinite): train/loss is NaN at step 122`."""
    if cancel is None:
        return None
    verb = {
        "intent": "cancel pending",
        "requested": "cancel requested",
        "skipped": "cancel skipped",
    }
    who = cancel.requested_by + (f" ({cancel.rule})" if cancel.rule else "")
    text = f"{verb.get(cancel.state, cancel.state)} by {who}: {cancel.reason}"
    return text + (f" [{cancel.last_error}]" if cancel.last_error else "")


def cancel_json(cancel: CancelRecord | None) -> dict[str, Any] | None:
    """Who asked the service to cancel, why, and the outcome."""
    if cancel is None:
        return None
    return cancel.summary(iso) | {"attempts": cancel.attempts, "last_error": cancel.last_error}
