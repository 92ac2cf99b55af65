"""The timing rules: status interval, metrics cadence and error backoff."""

from __future__ import annotations

import random

from watcherd.api.client import Job
from watcherd.config import PollConfig
from watcherd.model import MetricRecord
from watcherd.watch.schedule import JobSchedule, backoff, next_look, settled_cursor, status_interval

POLL = PollConfig(interval=60.0, min_interval=10.0, metrics_interval=300.0, max_backoff=600.0)


def record(step: int, stamp: int | None) -> MetricRecord:
    """A train row as the API client hands it over."""
    return ("train", step, stamp, 1.0, "{}")


def job(status: str, remaining: float | None = None) -> Job:
    """A job as the list endpoint gives it."""
    return Job(id="ft-a", status=status, text=b"{}", seconds_remaining=remaining)


def test_a_near_change_brings_the_next_look_forward_but_not_below_min_interval() -> None:
    """`seconds_remaining` shortens the interval; `min_interval` still bounds it."""
    assert status_interval(POLL, job("uploading"), changed=False) == 60.0
    assert status_interval(POLL, job("uploading", 20.0), changed=False) == 21.0
    assert status_interval(POLL, job("uploading", 0.0), changed=False) == 10.0
    assert status_interval(POLL, job("running"), changed=True) == 10.0


def test_metrics_due_sooner_than_the_status_pull_the_next_look_in() -> None:
    """A running job is looked at when its metrics are due, a queued one only for status."""
    sched = JobSchedule("ft-a", metrics_at=1030.0)
    assert next_look(POLL, sched, job("running"), changed=False, now=1000.0) == 1030.0
    assert next_look(POLL, sched, job("queued"), changed=False, now=1000.0) == 1060.0
    sched.metrics_at = 1001.0
    assert next_look(POLL, sched, job("running"), changed=False, now=1000.0) == 1010.0


def test_backoff_is_full_jitter_within_its_ceiling() -> None:
    """Delays stay within [1 s, min(max_backoff, min_interval * 2^n)] and spread out."""
    rng = random.Random(7)
    for failures, ceiling in [(1, 20.0), (3, 80.0), (20, 600.0)]:
        delays = [backoff(POLL, failures, rng) for _ in range(500)]
        assert min(delays) >= 1.0 and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.3 * ceiling


def test_the_cursor_stays_behind_rows_that_may_still_be_joined() -> None:
    """The next `global_step_from` is the lowest step logged within SETTLE_NS of the newest."""
    second, t0 = 1_000_000_000, 1_779_196_193_564_587_000  # 2026 in nanoseconds (`stamps`)
    fast = [record(step, t0 + step * second) for step in range(1, 12)]
    assert settled_cursor(fast, None) == 7  # step 11 is newest; 7 is the first within 5 s
    assert settled_cursor(fast, 9) == 9  # never backwards
    slow = [record(step, t0 + step * 10 * second) for step in range(1, 5)]
    assert settled_cursor(slow, None) == 4  # slow steps: the newest step itself
    assert settled_cursor([], 4) == 4
    unstamped = [record(7, None), record(9, None)]
    assert settled_cursor(unstamped, 3) == 9
