"""Shared vocabulary: job statuses, job IDs, metric rows and their filters.

Both the watcher and the simulator use this module, so that the local `metrics`
command and the service apply exactly the same `list_metrics` semantics.
"""

# No `from __future__ import annotations` here: `NamedTuple` would compile every field's
# annotation text (a `typing.ForwardRef` each), which cost `list` more than the rest
# of this module's import.
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, NamedTuple

from watcherd.errors import InvalidJobIdError

#: A metric row as the API returns it: a flat mapping of key to number.
MetricRow = dict[str, Any]
#: A metric row as watcherd keeps it, without a dict: (kind, step, timestamp, loss, text).
#: `kind` is `row_kind`'s, `timestamp` None when the row has none, `loss` the row's
#: `{kind}/loss` as decoded (None when absent), `text` its exact JSON text.
MetricRecord = tuple[str, int, int | None, int | float | None, str]


class MetricRecords(list[MetricRecord]):
    """A batch's records zipped from columns, the columns kept: the store and the alert
    rules read a batch column by column, so they take these rather than take every
    record apart again. `epochs`, `train_losses` and `eval_losses` hold each row's
    `train/epoch`, `train/loss` and `eval/loss` as decoded (None when absent).
    """

    __slots__ = ("epochs", "eval_losses", "kinds", "losses", "stamps", "steps", "texts",
                 "train_losses")  # fmt: skip

    def __init__(
        self,
        kinds: Sequence[str],
        steps: Sequence[int],
        stamps: Sequence[int | None],
        losses: Sequence[int | float | None],
        texts: Sequence[str],
        *,
        epochs: Sequence[Any],
        train_losses: Sequence[Any],
        eval_losses: Sequence[Any],
    ) -> None:
        super().__init__(zip(kinds, steps, stamps, losses, texts, strict=True))
        self.kinds, self.steps, self.stamps, self.losses, self.texts = (
            kinds, steps, stamps, losses, texts)  # fmt: skip
        self.epochs, self.train_losses, self.eval_losses = epochs, train_losses, eval_losses

    def whole(self) -> bool:
        """True while the columns still describe the list (it was not changed since)."""
        return len(self.steps) == len(self)


TERMINAL_STATUSES: Final = frozenset({"completed", "error", "cancelled", "user_error"})
KNOWN_STATUSES: Final = frozenset(
    {
        "pending",
        "queued",
        "running",
        "compressing",
        "uploading",
        "cancel_requested",
        *TERMINAL_STATUSES,
    }
)
#: watcherd's own status for a job the service stopped knowing (three 404s in a row).
MISSING: Final = "missing"
#: Statuses in which a cancel is refused (the together CLI's NON_CANCELLABLE_STATES).
NON_CANCELLABLE_STATUSES: Final = frozenset({"cancel_requested", *TERMINAL_STATUSES})
#: The statuses hooks fire on when a hook names no `on:` list.
DEFAULT_HOOK_EVENTS: Final = ("completed", "error", "cancelled", "user_error")

#: Rows logged within this long (nanoseconds, by their `timestamp`) of a job's newest
#: row are fetched again: an eval row lands about a second after the train row of its
#: step, possibly after later train rows, so a cursor on the newest step alone could
#: skip it. The store de-duplicates what comes twice.
SETTLE_NS: Final = 5_000_000_000

STEP_KEY: Final = "train/global_step"
EPOCH_KEY: Final = "train/epoch"
TIMESTAMP_KEY: Final = "timestamp"

_JOB_ID = re.compile(r"ft-[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def is_terminal(status: str) -> bool:
    """True for the statuses a job never leaves."""
    return status in TERMINAL_STATUSES


def is_settled(status: str | None) -> bool:
    """True once nothing more is expected of a job: terminal, or missing at the service.

    None (not fetched yet) is not settled. The daemon still polls a missing job now and
    then (backing off up to `max_backoff`) in case it comes back; never a terminal one.
    """
    return status is not None and (status in TERMINAL_STATUSES or status == MISSING)


def validate_job_id(job_id: str) -> str:
    """Return `job_id` unchanged if it is `ft-` plus letters, digits, `-` or `_`."""
    if not isinstance(job_id, str):
        raise InvalidJobIdError(repr(job_id), "not a string")
    if not job_id.startswith("ft-"):
        raise InvalidJobIdError(job_id, "must start with 'ft-'")
    if not _JOB_ID.fullmatch(job_id):
        raise InvalidJobIdError(
            job_id, "only letters, digits, '-' and '_' may follow 'ft-' (at most 128)"
        )
    return job_id


def row_kind(row: MetricRow) -> str:
    """`train` if the row carries a train metric besides step and epoch, else `eval`."""
    for key in row:
        if key.startswith("train/") and key not in (STEP_KEY, EPOCH_KEY):
            return "train"
    return "eval"


def row_step(row: MetricRow) -> int:
    """The row's `train/global_step` as an int (the API sends it on every row)."""
    value = row[STEP_KEY]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"train/global_step is not a finite number: {value!r}")
    return int(value)


def dumps_exact(value: Any) -> str:
    """JSON text that keeps integers exact and writes NaN and ±Infinity literally."""
    return json.dumps(value, allow_nan=True, separators=(",", ":"))


def loads_exact(text: str | bytes) -> Any:
    """Parse JSON keeping integers exact and NaN/±Infinity as floats.

    Raises ValueError for invalid JSON, including nesting too deep to parse.
    """
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


_ISO = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2})?)?)"
    r"(?:[.,](?P<frac>\d+))?"
    r"(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_iso_ns(text: str) -> int:
    """Nanoseconds since the epoch for an ISO-8601 date-time (no offset means UTC).

    Nine fractional digits make a nanosecond timestamp round-trip; more are cut. Also
    read: a lower-case `t` and `z` (RFC 3339), a decimal comma and an hour-only offset
    (`+05`, ISO 8601), as a server other than Together's may write them.
    """
    match = _ISO.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an ISO-8601 date-time: {text!r}")
    tz = match["tz"] or "+00:00"
    if tz in ("Z", "z"):
        tz = "+00:00"
    elif len(tz) == 3:
        tz += ":00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    stamp = match["base"].replace(" ", "T").replace("t", "T")
    if "T" not in stamp:  # a bare date would parse naive (local time), its offset ignored
        stamp += "T00:00"
    try:
        base = datetime.fromisoformat(stamp + tz)
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 date-time: {text!r}") from exc
    frac = (match["frac"] or "")[:9].ljust(9, "0")
    # Aware subtraction, not `timestamp()`: that converts to a UTC datetime first, which
    # fails for year 1 with a positive offset (and for 0001-01-01 itself).
    elapsed = base - _EPOCH
    seconds = elapsed.days * 86_400 + elapsed.seconds
    return seconds * 1_000_000_000 + int(frac)


def job_epoch(job: Mapping[str, Any] | None, field: str) -> float | None:
    """Epoch seconds of a job object's date-time `field` (`created_at`, `started_at`, ...),
    or None when the job has none or it does not parse."""
    text = job.get(field) if job else None
    if not isinstance(text, str):
        return None
    try:
        return parse_iso_ns(text) / 1e9
    except ValueError:
        return None


def format_ns(ns: int) -> str:
    """ISO-8601 UTC text for nanoseconds since the epoch (microsecond precision)."""
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    micros = (ns % 1_000_000_000) // 1000
    return stamp.replace(microsecond=micros).isoformat().replace("+00:00", "Z")


class _Bounds(NamedTuple):
    global_step_from: int | None = None
    global_step_to: int | None = None
    logged_at_from: int | None = None  # nanoseconds since the epoch
    logged_at_to: int | None = None
    resolution: int | None = None


class MetricFilter(_Bounds):
    """The five `list_metrics` filters; `None` means "not given".

    Step and time bounds are inclusive. `resolution` keeps a uniform sample of that
    many train rows (first and last included); eval rows always come in full.
    """

    __slots__ = ()

    def __new__(
        cls,
        global_step_from: int | None = None,
        global_step_to: int | None = None,
        logged_at_from: int | None = None,
        logged_at_to: int | None = None,
        resolution: int | None = None,
    ) -> "MetricFilter":
        if resolution is not None and resolution < 1:
            raise ValueError("resolution must be a positive integer")
        bounds = (global_step_from, global_step_to, logged_at_from, logged_at_to)
        return super().__new__(cls, *bounds, resolution)

    def admits(self, step: int, timestamp: int) -> bool:
        """True if a row at this step and time passes the step and time bounds."""
        if self.global_step_from is not None and step < self.global_step_from:
            return False
        if self.global_step_to is not None and step > self.global_step_to:
            return False
        if self.logged_at_from is not None and timestamp < self.logged_at_from:
            return False
        return self.logged_at_to is None or timestamp <= self.logged_at_to


def sample_indices(count: int, resolution: int | None) -> range | list[int]:
    """Indices of a uniform sample of `resolution` items out of `count`, ends included."""
    if resolution is None or resolution >= count:
        return range(count)
    if resolution == 1:
        return [count - 1]
    span, gaps = count - 1, resolution - 1
    return [(i * span + gaps // 2) // gaps for i in range(resolution)]


def filter_metrics(rows: Iterable[MetricRow], flt: MetricFilter) -> list[MetricRow]:
    """Apply `list_metrics` semantics to rows in API (chronological) order."""
    kept = [r for r in rows if flt.admits(row_step(r), int(r.get(TIMESTAMP_KEY, 0)))]
    if flt.resolution is None:
        return kept
    train_positions = [i for i, r in enumerate(kept) if row_kind(r) == "train"]
    chosen = {train_positions[i] for i in sample_indices(len(train_positions), flt.resolution)}
    return [r for i, r in enumerate(kept) if i in chosen or row_kind(r) != "train"]


def sort_key(row: MetricRow) -> tuple[int, int]:
    """API order: by timestamp, then by step."""
    return (int(row.get(TIMESTAMP_KEY, 0)), row_step(row))


def metric_keys(rows: Sequence[MetricRow]) -> list[str]:
    """Numeric keys in the order first seen, as the `together` CLI lists them."""
    seen: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                seen.setdefault(key, None)
    return list(seen)


# Read models: what the store hands to the CLI views. Times are wall-clock epoch seconds.
# Named tuples, not dataclasses: as immutable, and a read command neither imports
# `dataclasses` (with `inspect`) nor compiles their generated methods when it starts.


class Transition(NamedTuple):
    """One observed status change of a job (`from_status` is None for the first sighting)."""

    job_id: str
    from_status: str | None
    to_status: str
    observed_at: float


class DeliveryState(StrEnum):
    """Where a hook delivery stands; its text is what the store keeps and JSON shows.

    pending -> running -> delivered | failed (tried again at next_attempt_at) | dead.
    """

    PENDING = "pending"
    RUNNING = "running"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"


#: Deliveries waiting for their `next_attempt_at`: not tried yet, or to be tried again.
WAITING_DELIVERIES: Final = frozenset({DeliveryState.PENDING, DeliveryState.FAILED})
#: Deliveries that are over: nothing happens to them but `watcherd hooks retry`.
SETTLED_DELIVERIES: Final = frozenset({DeliveryState.DELIVERED, DeliveryState.DEAD})
#: The error of an attempt cut short: a stop killed its hook, or a crash left it running.
INTERRUPTED: Final = "interrupted: watcherd stopped during the attempt"


class Delivery(NamedTuple):
    """One hook delivery: the outbox row for (job, status, hook)."""

    id: str  # "{job_id}:{status}:{hook}"
    job_id: str
    hook: str
    event: str  # the status that triggered it, e.g. "completed" or "missing"
    previous_status: str | None
    occurred_at: float
    state: DeliveryState
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    output_tail: str | None
    updated_at: float


class Alert(NamedTuple):
    """One alert episode of a job: what tripped it and, once resolved, when."""

    job_id: str
    rule: str
    episode: int
    action: str  # alert | cancel
    opened_at: float
    resolved_at: float | None
    details: dict[str, Any]  # message, step, key, value, best, threshold, ...

    @property
    def id(self) -> str:
        """The stable alert id `{job}:alert.{rule}:{episode}`."""
        return f"{self.job_id}:alert.{self.rule}:{self.episode}"


class CancelRecord(NamedTuple):
    """Who asked the service to cancel a job, why, and what came of it."""

    job_id: str
    requested_by: str  # "watcherd" (a rule) or "user" (`watcherd cancel`)
    rule: str | None
    reason: str
    decided_at: float
    state: str  # intent (decided, not yet accepted) | requested | skipped
    attempts: int
    called_at: float | None
    finished_at: float | None
    last_error: str | None

    def summary(self, stamp: Callable[[float], str | None]) -> dict[str, Any]:
        """Who asked, which rule, why, the state, and when it was decided (`stamp`ed),
        the fields every JSON surface (hook payloads, `list --json`) shares."""
        return {
            "requested_by": self.requested_by,
            "rule": self.rule,
            "reason": self.reason,
            "state": self.state,
            "decided_at": stamp(self.decided_at),
        }


class JobOverview(NamedTuple):
    """One row of `watcherd list`: what we know about a job locally."""

    job_id: str
    note: str | None
    watched: bool
    status: str | None  # None until the first successful poll
    status_since: float | None
    step: int | None  # highest stored train/global_step
    train_loss: float | None  # last train/loss
    eval_loss: float | None  # last eval/loss
    seconds_remaining: float | None  # progress.seconds_remaining at the last poll
    last_poll_at: float | None
    last_error: str | None
    model: str | None
    model_output_name: str | None
    hooks: dict[str, int]  # delivery count by state
    reason: str | None = None  # why a terminal job ended (see watcherd.eventlog.reason)
    total_price: int | None = None  # nano-dollars at the last poll (grows while running)
    token_count: int | None = None
    restart_of: str | None = None  # the job the service restarted as this one
    restarted_as: str | None = None  # the job the service restarted this one as
    metrics_complete: bool = True  # False: finished, its last metrics fetch still failing
    alerts: tuple[str, ...] = ()  # rules with an open alert episode
    eta_at: float | None = None  # expected end (epoch seconds)
    eta_source: str | None = None  # service | first_epoch | step_rate
    cancel: CancelRecord | None = None


#: Named phases of a job's life and the statuses whose time they add up.
PHASES: Final = (
    ("queue wait", ("pending", "queued")),
    ("training", ("running",)),
    ("upload", ("compressing", "uploading")),
)


def spans(transitions: Sequence[Transition], status: str | None, now: float) -> list[float | None]:
    """Seconds spent in each transition's `to` status (the current one up to `now`)."""
    ordered = sorted(transitions, key=lambda t: t.observed_at)
    result: list[float | None] = []
    for i, tr in enumerate(ordered):
        if i + 1 < len(ordered):
            result.append(ordered[i + 1].observed_at - tr.observed_at)
        elif is_settled(tr.to_status):
            result.append(None)
        else:
            result.append(max(0.0, now - tr.observed_at))
    return result


def phases(transitions: Sequence[Transition], status: str | None, now: float) -> dict[str, Any]:
    """Seconds per named phase (`queue_wait`, `training`, `upload`) and the `total`.

    The total runs from the first sighting to the end (or `now`); a phase never
    seen is None.
    """
    ordered = sorted(transitions, key=lambda t: t.observed_at)
    lasted = spans(ordered, status, now)
    out: dict[str, float | None] = {}
    for name, statuses in PHASES:
        times = [s for t, s in zip(ordered, lasted, strict=True) if t.to_status in statuses]
        out[name.replace(" ", "_")] = sum(s for s in times if s is not None) if times else None
    if ordered:
        end = ordered[-1].observed_at if is_settled(ordered[-1].to_status) else now
        out["total"] = max(0.0, end - ordered[0].observed_at)
    else:
        out["total"] = None
    return out


class PayloadFacts(NamedTuple):
    """What a hook payload tells about a job beyond its object, as the store knows it."""

    reason: str | None = None
    total_price: int | None = None  # nano-dollars
    token_count: int | None = None
    transitions: tuple[Transition, ...] = ()
    events: tuple[dict[str, Any], ...] = ()  # the event log as received, in API order
    losses: tuple[float, ...] = ()  # train/loss at a sample of steps, in order (NaN kept)


class MetricsSummary(NamedTuple):
    """The metrics part of a hook payload."""

    last_step: int | None
    last_train_loss: float | None
    best_train_loss: float | None
    last_eval_loss: float | None
    best_eval_loss: float | None
    complete: bool = True  # False: the job finished but its last metrics are still to come
