"""What the running daemon says about itself: one snapshot, read three ways.

The daemon takes a `Snapshot` (jobs by status, backoff, auth trouble, the host pause,
hook deliveries by state as stored, poll and API counters) and turns it into the
one-line systemd `STATUS=`, the state keys `watcherd health` reads, and the
Prometheus text of `watcherd.daemon.prometheus`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from watcherd.api.client import ApiStats
from watcherd.daemon import health
from watcherd.daemon.health import STATUS_EVERY
from watcherd.model import DeliveryState, is_settled
from watcherd.store.interface import StoreApi
from watcherd.systemd import Notifier
from watcherd.watch.poller import Poller

#: A job the daemon has not fetched yet.
NEW: Final = "new"
#: No watchdog ping once the poll loop has made no progress for 2 x interval + this.
STALL_GRACE: Final = 5.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The daemon's state at `taken_at` (wall clock)."""

    jobs: Mapping[str, int]  # watched jobs by status as stored ("new" before a fetch)
    backing_off: int = 0  # jobs whose last poll failed
    auth_error: str | None = None  # e.g. "API key refused (401)"
    paused_until: float | None = None  # every request to the API host held back until
    deliveries: Mapping[str, int] = field(default_factory=dict)  # by state, from the store
    alerts: Mapping[str, int] = field(default_factory=dict)  # open episodes by rule, stored
    polls: int = 0
    poll_errors: int = 0
    last_success_at: float | None = None
    api: ApiStats = field(default_factory=lambda: ApiStats(0, 0, {}))
    taken_at: float = field(default_factory=time.time)
    store_locked_since: float | None = None  # waiting for another process's write lock
    spend: Mapping[str, float] = field(default_factory=dict)  # dollars by period (day, ...)

    @property
    def dead_hooks(self) -> int:
        """Deliveries that gave up (`watcherd hooks retry` brings them back)."""
        return self.deliveries.get(DeliveryState.DEAD, 0)


def count_jobs(statuses: Mapping[str, str | None]) -> dict[str, int]:
    """Jobs by status from job_id -> status (None: not fetched yet)."""
    return dict(Counter(status or NEW for status in statuses.values()))


def status_line(snap: Snapshot) -> str:
    """One line for systemd's STATUS=: jobs by state, then trouble.

    e.g. `5 jobs, 2 done, 1 queued, 2 running; rate limited; 1 backing off; 1 dead hooks;
    1 alerts open (1 stalled)`.
    """
    grouped: Counter[str] = Counter()
    for status, n in snap.jobs.items():
        grouped["done" if is_settled(status) else status] += n
    parts = [f"{sum(snap.jobs.values())} jobs"] + [f"{n} {s}" for s, n in sorted(grouped.items())]
    trouble = []
    if snap.store_locked_since is not None:
        waited = max(0.0, snap.taken_at - snap.store_locked_since)
        trouble.append(f"database locked by another process for {waited:.0f}s, waiting")
    if snap.auth_error:
        trouble.append(f"{snap.auth_error}, polling paused")
    if snap.paused_until is not None:
        trouble.append(f"rate limited for {max(0.0, snap.paused_until - snap.taken_at):.0f}s")
    if snap.backing_off:
        trouble.append(f"{snap.backing_off} backing off")
    if snap.dead_hooks:
        trouble.append(f"{snap.dead_hooks} dead hooks")
    open_alerts = sum(snap.alerts.values())
    if open_alerts:
        rules = ", ".join(f"{n} {rule}" for rule, n in sorted(snap.alerts.items()) if n)
        trouble.append(f"{open_alerts} alerts open ({rules})")
    return "; ".join([", ".join(parts), *trouble])


class StatusReporter:
    """Publishes the daemon's state: STATUS=, watchdog pings, and the keys `health` reads.

    Delivery counts come from the store (so dead hooks of earlier runs count too),
    re-read on every `publish()` and `refresh()`.
    """

    def __init__(
        self,
        store: StoreApi,
        poller: Poller,
        notifier: Notifier,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.poller = poller
        self.notifier = notifier
        self.wall = wall
        self.monotonic = monotonic
        self._deliveries: dict[str, int] = {}
        self._alerts: dict[str, int] = {}
        self.persisting = False  # a `persist()` is under way

    @property
    def every(self) -> float:
        """Seconds between updates: at most STATUS_EVERY, twice per watchdog period."""
        return min(self.notifier.watchdog_interval or STATUS_EVERY, STATUS_EVERY)

    async def refresh(self) -> Snapshot:
        """A snapshot with delivery counts read from the store now."""
        self._deliveries = await self.store.delivery_counts()
        self._alerts = await self.store.open_alert_counts()
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        """The state now; delivery counts as of the last refresh."""
        jobs = self.poller.jobs.values()
        stats = self.poller.stats
        until = self.poller.paused_until
        now = self.wall()
        return Snapshot(
            jobs=count_jobs({j.job_id: j.status for j in jobs}),
            backing_off=sum(1 for j in jobs if j.failures or j.metrics_failures),
            auth_error=stats.auth_error,
            paused_until=until if until and until > now else None,
            deliveries=dict(self._deliveries),
            alerts=dict(self._alerts),
            polls=stats.polls,
            poll_errors=stats.errors,
            last_success_at=stats.last_success_at,
            api=self.poller.api_stats,
            taken_at=now,
            store_locked_since=self.store.lock_wait_since,
        )

    async def publish(self) -> str:
        """STATUS=, a watchdog ping if the poll loop progresses, the heartbeat; the line."""
        await self.refresh()
        line = self.announce()
        await self._write(self.snapshot())
        return line

    def announce(self) -> str:
        """STATUS= and a watchdog ping if the poll loop progresses; never waits on the store.

        Delivery counts are those of the last refresh.
        """
        line = status_line(self.snapshot())
        self.notifier.status(line)
        watchdog = self.notifier.watchdog_interval
        stalled = self.monotonic() - self.poller.stats.last_progress
        if watchdog is None or stalled < 2 * watchdog + STALL_GRACE:
            self.notifier.watchdog()
        return line

    async def persist(self) -> None:
        """Fresh delivery counts, then the heartbeat and the state `health` reads."""
        self.persisting = True
        try:
            await self.refresh()
            await self._write(self.snapshot())
        finally:
            self.persisting = False

    async def _write(self, snap: Snapshot) -> None:
        await health.publish(
            self.store,
            now=snap.taken_at,
            every=self.every,
            line=status_line(snap),
            auth_error=snap.auth_error,
        )
