"""The one full-jitter backoff, and the schedules its three callers draw from it."""

from __future__ import annotations

import random

from tests.fakerng import Edge
from watcherd.backoff import full_jitter
from watcherd.config import PollConfig
from watcherd.hooks.outcome import next_attempt_delay
from watcherd.watch.schedule import backoff


def test_full_jitter_stays_within_bounds() -> None:
    """Full-jitter delays lie in [0, min(cap, base*2^(n-1))] and spread over that range."""
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        draws = [full_jitter(attempt, base=0.5, cap=30.0, rng=rng) for _ in range(400)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.9 * ceiling and min(draws) < 0.1 * ceiling
        assert 0.4 * ceiling < sum(draws) / len(draws) < 0.6 * ceiling


def test_the_ceiling_doubles_from_base_to_cap_whatever_the_attempt_count() -> None:
    """Attempt 0 counts as 1; a huge count reaches the cap without overflowing; floor 0."""
    tops = [full_jitter(n, base=2.0, cap=50.0, rng=Edge(True)) for n in (0, 1, 2, 3, 5, 6)]
    assert tops == [2.0, 2.0, 4.0, 8.0, 32.0, 50.0]
    assert full_jitter(10**9, base=2.0, cap=50.0, rng=Edge(True)) == 50.0
    assert full_jitter(3, base=2.0, cap=50.0, rng=Edge(False)) == 0.0


def test_the_poller_and_the_hooks_draw_the_delays_they_drew_before() -> None:
    """Seeded draws equal the formulas the poller and the dispatcher used to carry."""
    poll = PollConfig(interval=60.0, min_interval=10.0, metrics_interval=300.0, max_backoff=600.0)
    mine, theirs = random.Random(5), random.Random(5)
    for failures in range(1, 40):
        ceiling = min(poll.max_backoff, poll.min_interval * 2.0 ** min(failures, 30))
        assert backoff(poll, failures, mine) == max(1.0, theirs.uniform(0.0, ceiling))
    for attempt in range(1, 40):
        ceiling = min(900.0, 5.0 * 2.0 ** min(attempt - 1, 62))
        assert next_attempt_delay(attempt, rng=mine) == theirs.uniform(0.0, ceiling)
