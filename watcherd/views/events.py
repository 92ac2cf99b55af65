"""`watcherd events JOB_ID`: a job's event log, as `together fine-tuning list-events` shows it.

The table has the CLI's columns (Type, Message, Created At, the time as
`MM/DD/YYYY, HH:MM AM` in local time); `--json` prints the events exactly as the
service sent them, in its order, as the CLI's `--json` does. `show` ends with the
last few lines of the same table.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from watcherd.views._fmt import Cell, Column, table

COLUMNS: Final = (
    Column("TYPE"),
    Column("MESSAGE", shrink=True),
    Column("CREATED AT", drop=1),
)
_LEVEL_STYLES: Final = {"error": "red", "warning": "yellow"}

Event = Mapping[str, Any]


def render_events(job_id: str, events: Sequence[Event], *, color: bool, width: int) -> str:
    """The event table, or the CLI's message when there are none."""
    if not events:
        return f"No events found for job {job_id}"
    return "\n".join(event_lines(events, color=color, width=width))


def event_lines(events: Sequence[Event], *, color: bool, width: int) -> list[str]:
    """The header and one line per event, fitted to `width`."""
    return table(COLUMNS, [_cells(e) for e in events], color=color, width=width)


def _cells(event: Event) -> list[Cell]:
    level = event.get("level")
    style = _LEVEL_STYLES.get(level.lower()) if isinstance(level, str) else None
    return [
        (_text(event.get("type")), style),
        (_text(event.get("message")), None),
        (created_at(event.get("created_at")), None),
    ]


def created_at(value: object) -> str:
    """`05/19/2026, 01:05 PM` in local time, as the together CLI formats it ('' if unreadable)."""
    if not isinstance(value, str):
        return ""
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return ""
    if stamp.tzinfo is not None:
        with contextlib.suppress(OverflowError, OSError, ValueError):
            stamp = stamp.astimezone()
    return stamp.strftime("%m/%d/%Y, %I:%M %p")


def events_json(events: Sequence[Event]) -> str:
    """The events as the together CLI's `--json` prints them: indented, in API order."""
    return json.dumps(list(events), indent=2, ensure_ascii=False)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def recent(events: Sequence[Event], count: int) -> list[Event]:
    """The last `count` events."""
    return list(events[-count:]) if count > 0 else []
