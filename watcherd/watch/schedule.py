"""When to look at a job again: per-job schedule state and the timing rules.

Pure functions of the config, the job as last seen and the clock, so the poller
stays about requests and records.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from watcherd.api.client import Job
from watcherd.backoff import full_jitter
from watcherd.config import PollConfig
from watcherd.model import SETTLE_NS, MetricRecord, is_terminal
from watcherd.stamps import ns_per_unit

#: Statuses before training: no metric rows can appear yet.
QUIET_STATUSES = frozenset({"pending", "queued"})


@dataclass(slots=True)
class JobSchedule:
    """What the poller keeps in memory per job between rounds."""

    job_id: str
    status: str | None = None
    max_step: int | None = None
    next_at: float = 0.0  # monotonic: when to look at the job next
    metrics_at: float = 0.0  # monotonic: when its new metric rows are due
    cursor: int | None = None  # `global_step_from` of the next metrics fetch
    failures: int = 0  # status polls failed in a row
    metrics_failures: int = 0  # metrics fetches failed in a row
    metrics_pending: bool = False  # finished, but its last metrics fetch failed
    rate_limited: bool = False  # its last failure was the host's Retry-After pause
    alert_state: str | None = None  # the rules' memory as stored: its JSON text (compact)
    fetched: bool = False  # metrics were fetched in the poll under way
    cancel_pending: bool = False  # a cancel was decided and not yet settled


@dataclass(slots=True)
class PollerStats:
    """Counters for logs, the systemd status line and `health`."""

    rounds: int = 0
    polls: int = 0
    errors: int = 0
    last_success_at: float | None = None  # wall clock
    last_progress: float = field(default_factory=time.monotonic)
    auth_error: str | None = None


def status_interval(poll: PollConfig, job: Job, *, changed: bool) -> float:
    """The configured interval, sooner when the service says a change is near."""
    interval = poll.interval
    remaining = job.seconds_remaining
    if remaining is not None and math.isfinite(remaining) and remaining >= 0:
        interval = min(interval, remaining + 1.0)
    if changed:
        interval = min(interval, poll.min_interval)
    return max(poll.min_interval, interval)


def next_look(
    poll: PollConfig, sched: JobSchedule, job: Job, *, changed: bool, now: float
) -> float:
    """When to look at the job again: its status interval, or its metrics if sooner."""
    at = now + status_interval(poll, job, changed=changed)
    if job.status not in QUIET_STATUSES and not is_terminal(job.status):
        at = min(at, max(sched.metrics_at, now + poll.min_interval))
    return at


def backoff(poll: PollConfig, failures: int, rng: random.Random) -> float:
    """Full-jitter backoff from `min_interval` doubling up to `max_backoff`; at least 1 s."""
    delay = full_jitter(failures + 1, base=poll.min_interval, cap=poll.max_backoff, rng=rng)
    return max(1.0, delay)


def settled_cursor(rows: Sequence[MetricRecord], cursor: int | None) -> int | None:
    """The next `global_step_from` after fetching `rows` (everything from `cursor` on).

    The lowest step among rows logged within `SETTLE_NS` of the newest one (in the
    rows' own unit, `stamps`): an eval row landing late at one of those steps is still
    fetched, and with steps slower than that window the cursor is simply the newest
    step. Rows without a timestamp fall back to the highest step.
    """
    if not rows:
        return cursor
    stamps = [r[2] for r in rows if r[2] is not None]
    if len(stamps) < len(rows):
        top = max(r[1] for r in rows)
    else:
        newest = max(stamps)
        limit = newest - SETTLE_NS // ns_per_unit(newest)  # 5 s in the rows' own unit
        top = min(r[1] for r in rows if r[2] is not None and r[2] > limit)
    return top if cursor is None else max(cursor, top)
