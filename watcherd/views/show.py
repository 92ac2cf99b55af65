"""`watcherd show JOB_ID`: one job's fields, timeline, metric sparklines and hook deliveries.

JSON (`show_json`) keys: job (as in `list --json`), metrics_complete (false while a
finished job's last metrics fetch keeps failing), fields (label to text, only those
the job object holds), transitions (from, to, at, seconds: time in `to` until the next
change, or until `now` for the current one), phases (queue_wait, training, upload,
total: seconds or null), metrics (per key: count, first_step, last_step, first, last,
min, max; NaN and infinities null), deliveries (as in `hooks --json`), alerts (as in
`alerts --json`, oldest first), reason (why a terminal job ended), price (dollars),
events (the last few, as the service sent them), restart_of and restarted_as (the jobs
a service restart links this one to).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from watcherd.model import (
    PHASES,
    Alert,
    Delivery,
    JobOverview,
    MetricRow,
    Transition,
    is_settled,
    phases,
    spans,
)
from watcherd.views import _fields
from watcherd.views._fmt import ago, duration, paint, real, safe, status_style
from watcherd.views._series import Series, collect_series
from watcherd.views.alerts import alert_lines, alerts_json, cancel_text, eta_text
from watcherd.views.charts import sparkline
from watcherd.views.events import event_lines, recent
from watcherd.views.hooks import deliveries_json, delivery_lines
from watcherd.views.listing import dollars, finite, iso, job_json

SPARK_MIN, SPARK_MAX = 20, 60
#: How many of the newest events `show` prints.
RECENT_EVENTS: Final = 5


def render_show(
    job: JobOverview,
    raw_job: dict[str, Any] | None,
    transitions: Sequence[Transition],
    metrics: Sequence[MetricRow],
    deliveries: Sequence[Delivery],
    *,
    now: float,
    color: bool,
    width: int,
    events: Sequence[dict[str, Any]] = (),
    alerts: Sequence[Alert] = (),
) -> str:
    """The whole `show` page as text, sections separated by blank lines."""
    sections = [
        _title(job, now, color) + "\n" + _field_lines(job, raw_job, now),
        _timeline(transitions, job.status, now, color),
        _sparklines(collect_series(metrics), width),
        _events(events, color, width),
        _alerts(alerts, now, color, width),
        _hooks(deliveries, now, color, width),
    ]
    return "\n\n".join(s for s in sections if s)


def _title(job: JobOverview, now: float, color: bool) -> str:
    """`ft-…  running  since 3m ago  — note`."""
    status = paint(safe(job.status or "never polled"), status_style(job.status), color)
    parts = [paint(job.job_id, "bold", color), status]
    if job.status_since is not None:
        parts.append(f"since {ago(job.status_since, now)}")
    if not job.watched:
        parts.append("(unwatched)")
    if job.note:
        parts.append(f"— {safe(job.note)}")
    return "  ".join(parts)


def _field_lines(job: JobOverview, raw_job: dict[str, Any] | None, now: float) -> str:
    """`  label   value` lines: the job object's fields, then what watcherd knows."""
    pairs = _fields.job_fields(raw_job, job)
    pairs.append(("last poll", ago(job.last_poll_at, now)))
    if job.step is not None:
        pairs.append(("step", str(job.step)))
    if job.reason:
        pairs.append(("reason", safe(job.reason)))
    if job.restarted_as:
        pairs.append(("restarted as", f"{job.restarted_as} (`watcherd show {job.restarted_as}`)"))
    if job.restart_of:
        pairs.append(("restart of", f"{job.restart_of} (`watcherd show {job.restart_of}`)"))
    if job.total_price is not None:  # the last poll's price is newer than the object's
        pairs = [pair for pair in pairs if pair[0] != "price"]
        so_far = "" if is_settled(job.status) else " so far"
        pairs.append(("price", f"${job.total_price / 1_000_000_000:,.2f}{so_far}"))
    if not job.metrics_complete:
        pairs.append(("metrics", "incomplete: the last fetch failed; retrying"))
    eta = None if is_settled(job.status) else eta_text(job, now)
    if eta:
        pairs.append(("eta", eta))
    cancel = cancel_text(job.cancel)
    if cancel:
        pairs.append(("cancel", cancel))
    if job.last_error:
        pairs.append(("last error", job.last_error))
    label_width = max(len(label) for label, _ in pairs)
    return "\n".join(f"  {label.ljust(label_width)}  {safe(value)}" for label, value in pairs)


def _timeline(
    transitions: Sequence[Transition], status: str | None, now: float, color: bool
) -> str:
    """`Timeline` with one line per transition, then the phase totals."""
    if not transitions:
        return "Timeline\n  (no transitions recorded yet)"
    ordered = sorted(transitions, key=lambda t: t.observed_at)
    lines = ["Timeline"]
    for tr, lasted in zip(ordered, spans(ordered, status, now), strict=True):
        change = (
            f"{safe(tr.from_status or '·')} → "
            f"{paint(safe(tr.to_status), status_style(tr.to_status), color)}"
        )
        took = f"  ({duration(lasted)})" if lasted is not None else ""
        lines.append(f"  {_clock(tr.observed_at)}  {change}{took}")
    totals = phases(ordered, status, now)
    named = [(name, totals[name.replace(" ", "_")]) for name, _ in PHASES]
    named.append(("total", totals["total"]))
    lines.append("  " + " · ".join(f"{n} {duration(s)}" for n, s in named if s is not None))
    return "\n".join(lines)


def _clock(when: float) -> str:
    """A UTC time to the second: `2026-05-19 13:09:53Z`."""
    if real(when) is None:
        return "?"
    return datetime.fromtimestamp(when, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _sparklines(series: list[Series], width: int) -> str:
    """`Metrics` with one sparkline per key, labels aligned."""
    if not series:
        return ""
    labels = [safe(s.key) for s in series]
    label_width = max(map(len, labels))
    spark_width = max(SPARK_MIN, min(SPARK_MAX, width - label_width - 30))
    lines = ["Metrics"]
    for label, s in zip(labels, series, strict=True):
        lines.append(f"  {label.rjust(label_width)}  {sparkline(s.ys, spark_width, xs=s.xs)}")
    return "\n".join(lines)


def _events(events: Sequence[dict[str, Any]], color: bool, width: int) -> str:
    """`Events`: the last few lines of `watcherd events`, or nothing when there are none."""
    if not events:
        return ""
    shown = recent(events, RECENT_EVENTS)
    lines = event_lines(shown, color=color, width=width - 2)
    title = f"Events (last {len(shown)} of {len(events)}; `watcherd events` lists them all)"
    return "\n".join([title, *("  " + line for line in lines)])


def _alerts(alerts: Sequence[Alert], now: float, color: bool, width: int) -> str:
    """`Alerts`: the job's alert history, or nothing when it has none."""
    if not alerts:
        return ""
    lines = alert_lines(alerts, now=now, color=color, width=width - 2, job=False)
    return "\n".join(["Alerts", *("  " + line for line in lines)])


def _hooks(deliveries: Sequence[Delivery], now: float, color: bool, width: int) -> str:
    """`Hooks` and the job's deliveries, or nothing when there are none."""
    if not deliveries:
        return ""
    lines = delivery_lines(deliveries, now=now, color=color, width=width - 2, job=False)
    return "\n".join(["Hooks", *("  " + line for line in lines)])


def show_json(
    job: JobOverview,
    raw_job: dict[str, Any] | None,
    transitions: Sequence[Transition],
    metrics: Sequence[MetricRow],
    deliveries: Sequence[Delivery],
    *,
    now: float,
    events: Sequence[dict[str, Any]] = (),
    alerts: Sequence[Alert] = (),
) -> dict[str, Any]:
    """The `show` page as a JSON-ready dict (keys in the module docstring)."""
    ordered = sorted(transitions, key=lambda t: t.observed_at)
    return {
        "job": job_json(job, now),
        "metrics_complete": job.metrics_complete,
        "fields": dict(_fields.job_fields(raw_job, job)),
        "transitions": [
            {"from": t.from_status, "to": t.to_status, "at": iso(t.observed_at), "seconds": s}
            for t, s in zip(ordered, spans(ordered, job.status, now), strict=True)
        ],
        "phases": phases(ordered, job.status, now),
        "metrics": {s.key: _summary(s) for s in collect_series(metrics)},
        "deliveries": deliveries_json(deliveries),
        "alerts": alerts_json(alerts),
        "reason": job.reason,
        "restart_of": job.restart_of,
        "restarted_as": job.restarted_as,
        "price": dollars(job.total_price),
        "events": recent(events, RECENT_EVENTS),
    }


def _summary(series: Series) -> dict[str, Any]:
    """count, first/last step, first/last/min/max value of one series."""
    values = [v for v in series.ys if real(v) is not None]
    return {
        "count": len(series.ys),
        "first_step": int(series.xs[0]),
        "last_step": int(series.xs[-1]),
        "first": finite(series.ys[0]),
        "last": finite(series.ys[-1]),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }
