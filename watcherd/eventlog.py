"""Together's job event log: how to read an event, key it, and what the log tells.

The events endpoint (`GET /v1/fine-tunes/{id}/events`) returns the whole log every
time, with no cursor and no event ids, so watcherd keys each event itself:
`event_keys` hashes (created_at, type in lower case, message) and the event's
ordinal among identical ones in the same response. The log only grows, so an
event gets the same key in every later response; a changed `level` or an added
field does not make it new, and two identical events logged at the same instant
both stay.

`type` comes in lower case (the SDK's generated models) or upper case (its
hand-written enums, which also spell `COMPRESSING_MODEL` and `JOB_USER_ERROR`);
`event_type` reads both. Unknown types are kept and shown verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

Event = Mapping[str, Any]

#: Types whose message explains why a job ended (the hand-written enum's spellings mapped).
PROBLEM_TYPES: Final = frozenset({"job_error", "job_user_error", "billing_limit", "warning"})
PROBLEM_LEVELS: Final = frozenset({"error", "warning", "legacy_iwarning", "legacy_ierror"})
RESTARTED: Final = "job_restarted"
_ALIASES: Final = {"compressing_model": "model_compressing"}
#: Fields of a `job_restarted` event that may name the new job (none is documented).
_NEW_ID_FIELDS: Final = ("new_job_id", "restarted_job_id", "new_id", "job_id")
_JOB_ID: Final = re.compile(r"\bft-[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def event_type(event: Event) -> str | None:
    """The event's type in lower case (`JOB_ERROR` and `job_error` read alike)."""
    kind = event.get("type")
    if not isinstance(kind, str):
        return None
    lowered = kind.lower()
    return _ALIASES.get(lowered, lowered)


def event_level(event: Event) -> str | None:
    """The event's level in lower case (`Error` and `error` read alike); None if absent."""
    level = event.get("level")
    return level.lower() if isinstance(level, str) and level else None


def message(event: Event) -> str | None:
    """The event's message, if it has a non-empty one."""
    text = event.get("message")
    return text if isinstance(text, str) and text.strip() else None


def event_keys(events: Sequence[Event]) -> list[str]:
    """The stable key of each event of one response (see the module docstring)."""
    import hashlib  # here: `watcherd cost` reads through this module, and hashlib loads OpenSSL

    seen: dict[str, int] = {}
    keys = []
    for event in events:
        ident = json.dumps(
            [event.get("created_at"), event_type(event), event.get("message")],
            separators=(",", ":"),
            default=str,
        )
        ordinal = seen.get(ident, 0)
        seen[ident] = ordinal + 1
        keys.append(hashlib.sha256(f"{ident}#{ordinal}".encode()).hexdigest())
    return keys


def is_problem(event: Event) -> bool:
    """True for an error, warning or billing event."""
    return event_type(event) in PROBLEM_TYPES or event_level(event) in PROBLEM_LEVELS


def reason(
    status: str | None, job: Mapping[str, Any] | None, events: Sequence[Event]
) -> str | None:
    """Why a job ended, in the service's words; None while it runs or if nothing says.

    The job object's own error field first; then the message of the last error,
    warning or billing event; then, for a job that did not complete, its last event
    (`Job cancelled by the user`); a completed job says `job_complete`'s message. A
    problem event whose message is not text still wins, named by its type.
    """
    if status not in ("completed", "error", "cancelled", "user_error"):
        return None
    own = job_error(job)
    if own is not None:
        return own
    problems = [e for e in events if is_problem(e)]
    if problems:
        return _told(problems[-1])
    said = [message(e) for e in events if message(e) and _may_explain(status, e)]
    return said[-1] if said else None


def _told(problem: Event) -> str:
    """A problem event's message; when it has no text, its type (and a bare scalar it holds)."""
    text = message(problem)
    if text is not None:
        return text
    kind = event_type(problem) or event_level(problem) or "problem"
    value = problem.get("message")
    scalar = isinstance(value, int | float) and not isinstance(value, bool)
    return f"{kind}: {value}" if scalar else kind


def _may_explain(status: str, event: Event) -> bool:
    """A job that did not complete is never explained by a `job_complete` message."""
    return status == "completed" or event_type(event) != "job_complete"


def job_error(job: Mapping[str, Any] | None) -> str | None:
    """The job object's `error` field: a string, or an object with a `message`."""
    if not isinstance(job, Mapping):
        return None
    error = job.get("error")
    if isinstance(error, Mapping):
        error = error.get("message")
    return error.strip() if isinstance(error, str) and error.strip() else None


def last_field(events: Sequence[Event], name: str) -> str | None:
    """The last non-empty string value of `name` among the events (`checkpoint_path`, ...)."""
    for event in reversed(events):
        value = event.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def restart_target(event: Event, job_id: str) -> str | None:
    """The job a `job_restarted` event says continues `job_id`, if it names one.

    A field (`new_job_id`, ...) wins; else the first `ft-` ID in the message that is
    not the job itself. The format is not documented: see `watcherd.sim.events`.
    """
    if event_type(event) != RESTARTED:
        return None
    for name in _NEW_ID_FIELDS:
        value = event.get(name)
        if isinstance(value, str) and value != job_id and _JOB_ID.fullmatch(value):
            return value
    for found in _JOB_ID.findall(message(event) or ""):
        if found != job_id:
            return str(found)
    return None


def price_facts(job: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(total_price in nano-dollars, token_count) from a job object, when they are counts."""
    return count(job.get("total_price")), count(job.get("token_count"))


def count(value: Any) -> int | None:
    """A non-negative 64-bit count (`12`, `12.0`), or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if 0 <= value < 2**63 else None
