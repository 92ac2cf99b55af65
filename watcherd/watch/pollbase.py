"""The poller's state: its jobs' schedules, its settings, and the questions asked of them.

`watcherd.watch.poller.Poller` builds on this class (see that module for how a round
goes); the failure handling, one job's poll and the lease sharing are the steps between.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio
import structlog

from watcherd.api.client import ApiClient, ApiStats, Job
from watcherd.api.limits import Slots
from watcherd.config import Config
from watcherd.model import is_settled, is_terminal
from watcherd.store.interface import RowBatches, StoreApi
from watcherd.watch.alerting import AlertWatch
from watcherd.watch.cluster import Cluster
from watcherd.watch.events import EventFeed
from watcherd.watch.schedule import JobSchedule, PollerStats, backoff, next_look

log = structlog.get_logger("watcherd.watch.poller")

#: `--until-done` stops waiting for a finished job's metrics after this many failed
#: fetches in a row (the daemon itself keeps trying, backing off).
CATCH_UP_LIMIT = 5


class PollerBase:
    """What the poller keeps: the watched jobs' schedules, settings, counters."""

    def __init__(
        self,
        store: StoreApi,
        api: ApiClient,
        config: Config,
        *,
        on_deliveries: Callable[[], None] = lambda: None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        follow_restarts: bool = True,
    ) -> None:
        self.store = store
        self.follow_restarts = follow_restarts
        self.api = api
        self.config = config
        self.on_deliveries = on_deliveries
        self.wall = wall
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.jobs: dict[str, JobSchedule] = {}
        self.stats = PollerStats()
        self._wake = anyio.Event()
        self._warned_statuses: set[str] = set()
        self._auth_until = 0.0
        self._auth_failures = 0
        self._busy: set[str] = set()  # jobs whose poll is under way (in `run`)
        self._limiter = Slots(self._poll_slots(config))
        self.events = EventFeed(monotonic)
        self.alerting = AlertWatch(store, config, wall)
        #: On a shared database, the jobs this daemon holds leases on (None: all jobs).
        self.mine: frozenset[str] | None = None
        self.cluster = Cluster(store, config, wall) if config.store.url is not None else None
        self._seen: dict[str, float] = {}  # job id -> wall time of the newest state we know
        #: Where a big metrics body goes batch by batch as it arrives (SQLite); None: whole.
        self._batches = store if isinstance(store, RowBatches) else None

    # -- configuration -------------------------------------------------

    @property
    def paused_until(self) -> float | None:
        """When the API host's Retry-After pause ends (None: no pause)."""
        return self.api.gate.paused_until

    @property
    def api_stats(self) -> ApiStats:
        """The API client's request counters and latency."""
        return self.api.stats

    def reconfigure(self, config: Config, api: ApiClient | None = None) -> None:
        """Take a reloaded config (and a new client if the API settings changed)."""
        self.config = config
        self.alerting.config = config
        self._limiter.total_tokens = self._poll_slots(config)
        if api is not None:
            self.api = api
            self._auth_until = 0.0
            self.stats.auth_error = None
        self.wake()

    @staticmethod
    def _poll_slots(config: Config) -> int:
        """Job polls under way at once: enough to keep every request slot busy, no more.

        Bounding them keeps memory flat with thousands of jobs (each poll holds its
        job object and its page of rows).
        """
        return max(4, 2 * config.api.max_concurrency)

    def pause_changed(self) -> None:
        """The host's pause was cut or cleared (a reload): jobs held by it look again then."""
        resume = self.monotonic() + max(0.0, self.api.gate.paused_until - self.wall())
        for sched in self.live_jobs():
            if sched.rate_limited:
                sched.next_at = min(sched.next_at, resume)
                sched.metrics_at = min(sched.metrics_at, resume)
        self.wake()

    def wake(self) -> None:
        """Make the loop look at its schedule now (jobs added, config reloaded)."""
        self._wake.set()

    async def load_jobs(self, only: set[str] | None = None) -> None:
        """Refresh the in-memory schedule from the store's watched set (or just `only`)."""
        states = await self.store.job_states(only=only)
        ended: list[JobSchedule] = []
        for job_id in list(self.jobs):
            if job_id not in states:
                del self.jobs[job_id]
        for job_id, state in states.items():
            sched = self.jobs.get(job_id)
            if sched is None:
                sched = self.jobs[job_id] = JobSchedule(job_id, state.status, state.max_step)
            else:
                sched.status, sched.max_step = state.status, state.max_step
            sched.cursor = state.cursor_step
            seen = state.last_poll_at or 0.0
            self._seen[job_id] = max(self._seen.get(job_id, 0.0), seen)
            sched.metrics_pending = state.metrics_pending
            sched.alert_state = state.alert_state
            sched.cancel_pending = state.cancel_state == "intent"
            if sched.cancel_pending and is_settled(sched.status):
                ended.append(sched)
        for sched in ended:  # no poll will come for these: settle their cancel now
            await self.alerting.settle_cancel(self.api, sched, sched.status or "")

    def live_jobs(self) -> list[JobSchedule]:
        """Watched jobs that may still change, and finished ones still owed their metrics
        (on a shared database: those leased here)."""
        mine = self.mine
        return [
            j
            for j in self.jobs.values()
            if (j.metrics_pending or j.status is None or not is_terminal(j.status))
            and (mine is None or j.job_id in mine)
        ]

    def settled(self) -> bool:
        """True when every watched job is terminal or missing and its metrics are in.

        A finished job whose last metrics fetch failed CATCH_UP_LIMIT times in a row
        counts as settled too (`metrics_incomplete` names it), so `--until-done` ends.
        """
        return all(
            is_settled(j.status) and (not j.metrics_pending or j.metrics_failures >= CATCH_UP_LIMIT)
            for j in self.jobs.values()
        )

    def metrics_incomplete(self) -> list[str]:
        """Finished jobs whose last metric rows could not be fetched yet."""
        return [j.job_id for j in self.jobs.values() if j.metrics_pending]

    def _next_look(self, sched: JobSchedule, job: Job, *, changed: bool) -> float:
        return next_look(self.config.poll, sched, job, changed=changed, now=self.monotonic())

    def _backoff(self, failures: int) -> float:
        return backoff(self.config.poll, failures, self.rng)
