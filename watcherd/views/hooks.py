"""`watcherd hooks`: the hook deliveries as a table, or as JSON.

JSON keys (stable): id, job_id, hook, event, previous_status, state, attempts,
occurred_at, next_attempt_at, updated_at (ISO-8601 UTC or null), last_error,
output_tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from watcherd.model import WAITING_DELIVERIES, Delivery, DeliveryState
from watcherd.views._fmt import Cell, Column, ago, table
from watcherd.views.listing import iso

STATE_STYLES: Final = {
    DeliveryState.DELIVERED: "green",
    DeliveryState.DEAD: "red",
    DeliveryState.FAILED: "yellow",
}


def render_deliveries(
    deliveries: Sequence[Delivery], *, now: float, color: bool, width: int = 120
) -> str:
    """The deliveries table, one row each, or a note when there are none."""
    if not deliveries:
        return "No hook deliveries."
    return "\n".join(delivery_lines(deliveries, now=now, color=color, width=width, job=True))


def delivery_lines(
    deliveries: Sequence[Delivery], *, now: float, color: bool, width: int, job: bool
) -> list[str]:
    """Table lines (header first); `job=False` leaves out the job column (for `show`)."""
    columns = [
        Column("ID"),
        Column("JOB", drop=2),
        Column("HOOK"),
        Column("EVENT"),
        Column("STATE"),
        Column("ATTEMPTS", right=True),
        Column("UPDATED", drop=1),
        Column("LAST ERROR", shrink=True),
    ]
    rows = [_cells(d, now) for d in deliveries]
    if not job:
        del columns[1]
        for row in rows:
            del row[1]
    return table(columns, rows, color=color, width=width)


def _cells(delivery: Delivery, now: float) -> list[Cell]:
    """The table cells of one delivery; a waiting retry shows when it is due."""
    state = str(delivery.state)
    if state in WAITING_DELIVERIES and delivery.next_attempt_at is not None:
        state += f" (next {ago(delivery.next_attempt_at, now)})"
    return [
        (delivery.id, None),
        (delivery.job_id, None),
        (delivery.hook, None),
        (delivery.event, None),
        (state, STATE_STYLES.get(delivery.state)),
        (str(delivery.attempts), None),
        (ago(delivery.updated_at, now), None),
        (delivery.last_error or "", "red" if delivery.last_error else None),
    ]


def deliveries_json(deliveries: Sequence[Delivery]) -> list[dict[str, Any]]:
    """The deliveries as JSON-ready dicts (keys in the module docstring)."""
    return [
        {
            "id": d.id,
            "job_id": d.job_id,
            "hook": d.hook,
            "event": d.event,
            "previous_status": d.previous_status,
            "state": d.state,
            "attempts": d.attempts,
            "occurred_at": iso(d.occurred_at),
            "next_attempt_at": iso(d.next_attempt_at),
            "updated_at": iso(d.updated_at),
            "last_error": d.last_error,
            "output_tail": d.output_tail,
        }
        for d in deliveries
    ]
