"""`watcherd wait`: block until jobs are terminal, with or without the daemon.

Jobs that a running daemon watches are read from the database it keeps up to date.
Every other job (all of them when no daemon runs) `wait` polls itself, through the
same Poller, and records what it sees in the same database; it never takes the
daemon lock, so a daemon may start (or stop) while it waits, and the jobs it
delegated to a daemon that stopped are polled by `wait` from then on.

Waiting never changes the watched set. With no daemon running, `wait` first syncs
the database's watched set from the configuration, as the daemon does when it starts,
so that `watcherd list` agrees with the jobs file. A job outside it gets an unwatched
row: its history stays (`watcherd list --all`, `show`, `metrics`) and the daemon
does not poll it. Hooks follow the watched set: a job the configuration watches
(jobs file or `jobs.ids`) gets its hook deliveries queued when `wait` sees it change,
and the daemon delivers them when it next runs, just as if it had seen the change
itself; a job outside it fires no hooks, since waiting on a job is not subscribing
to it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import httpx

from watcherd.api.client import ApiClient
from watcherd.config import Config, JobsSource
from watcherd.errors import AuthError
from watcherd.model import EPOCH_KEY, JobOverview, MetricFilter, is_settled
from watcherd.store import Store
from watcherd.store.interface import StoreApi
from watcherd.store.opening import open_configured
from watcherd.watch.poller import Poller
from watcherd.watch.wiring import build_api

#: Seconds between looks at the database when a daemon does all the polling.
READ_INTERVAL = 1.0
#: Seconds between rounds when `wait` polls jobs itself (each job keeps its own schedule).
POLL_TICK = 0.2

#: What `wait` shows after each look: per job, its overview, last job object and newest
#: `train/epoch` (any may be missing for a job not fetched yet).
Seen = tuple[JobOverview, dict[str, Any] | None, float | None]
Report = Callable[[list[Seen]], None]


async def wait_for(
    config: Config, job_ids: list[str], limit: float | None, report: Report | None = None
) -> dict[str, str | None]:
    """Each job's last known status, once all are settled or `limit` seconds have passed.

    `report`, if given, is called after every look at the database with what it holds.
    """
    statuses: dict[str, str | None] = dict.fromkeys(job_ids)
    with anyio.move_on_after(math.inf if limit is None else limit):
        async with ApiClient.http_client(config.api) as http:
            if config.store.url is not None:
                await _wait_shared(config, job_ids, statuses, http, report)
                return statuses
            # With no daemon, every job is ours to poll: a missing key fails before any file.
            api = None if Store.daemon_running(config.store.path) else build_api(http, config)
            async with Store.open(config.store.path, writer=True, lock=False) as store:
                waiter = _Waiter(config, store, http, api, report)
                await waiter.prepare(job_ids)
                await waiter.run(statuses)
    return statuses


async def _wait_shared(
    config: Config,
    job_ids: list[str],
    statuses: dict[str, str | None],
    http: httpx.AsyncClient,
    report: Report | None,
) -> None:
    """`wait` on a shared database: with a live daemon, read; with none, poll as alone."""
    async with open_configured(config.store, writer=True) as store:
        running = bool(await store.live_daemons())
        api = None if running else build_api(http, config)
        waiter = _Waiter(config, store, http, api, report)
        waiter.shared_daemons = running
        await waiter.prepare(job_ids)
        await waiter.run(statuses)


class _Waiter:
    """Polls the jobs no running daemon watches; reads every status from the database."""

    def __init__(
        self,
        config: Config,
        store: StoreApi,
        http: httpx.AsyncClient,
        api: ApiClient | None,
        report: Report | None = None,
    ) -> None:
        self.config = config
        self.report = report
        self.store = store
        self.http = http
        self.api = api
        self.entries = JobsSource(config).entries()
        self.configured = {job_id for job_id, _ in self.entries}
        self.pollers: tuple[Poller, Poller] | None = None  # (with hooks, without)
        self.shared_daemons: bool | None = None  # on a shared database: daemons were live

    async def prepare(self, job_ids: list[str]) -> None:
        """Rows for every job; with no daemon, the watched set synced as the daemon would."""
        if not self._daemon_running():
            source = JobsSource(self.config).name()
            await self.store.sync_watched(self.entries, time.time(), source=source)
        await self.store.ensure_jobs(job_ids)

    def _daemon_running(self) -> bool:
        """A SQLite daemon's lock, or (shared database) live heartbeats when `wait` began."""
        if self.shared_daemons is not None:
            return self.shared_daemons
        return Store.daemon_running(self.config.store.path)

    async def run(self, statuses: dict[str, str | None]) -> None:
        """Round after round until every job in `statuses` is settled."""
        while True:
            await self._read(statuses)
            own = [j for j, s in statuses.items() if not is_settled(s)]
            if not own:
                return
            own = [j for j in own if j not in await self._delegated()]
            if own:
                await self._poll(own)
            await anyio.sleep(POLL_TICK if own else READ_INTERVAL)

    async def _read(self, statuses: dict[str, str | None]) -> None:
        seen: list[Seen] = []
        for job_id in statuses:
            found = await self.store.job(job_id)
            statuses[job_id] = found[0].status if found else None
            if found is not None and self.report is not None:
                seen.append((found[0], found[1], await self._epoch(found[0])))
        if self.report is not None:
            self.report(seen)

    async def _epoch(self, job: JobOverview) -> float | None:
        """`train/epoch` of the job's newest row (for the live line's total steps)."""
        if job.step is None:
            return None
        rows = await self.store.metrics(job.job_id, MetricFilter(global_step_from=job.step))
        epochs = [r[EPOCH_KEY] for r in rows if isinstance(r.get(EPOCH_KEY), int | float)]
        return float(epochs[-1]) if epochs else None

    async def _delegated(self) -> set[str]:
        """The jobs a running daemon watches (none when no daemon holds the lock)."""
        if not self._daemon_running():
            return set()
        return {job.job_id for job in await self.store.overview()}

    async def _poll(self, own: Iterable[str]) -> None:
        """One round for the jobs `wait` polls itself; hooks only for configured jobs."""
        hooked, plain = self._pollers()
        mine = set(own)
        await hooked.load_jobs(only=mine & self.configured)
        await plain.load_jobs(only=mine - self.configured)
        for poller in (hooked, plain):
            await poller.poll_due()
            if poller.stats.auth_error:
                raise AuthError(
                    f"{poller.stats.auth_error}: check the key named in api: of "
                    f"{self.config.source or 'the configuration'}"
                )

    def _pollers(self) -> tuple[Poller, Poller]:
        """Built on first use, so that a wait served by the daemon needs no API key."""
        if self.pollers is None:
            api = self.api or build_api(self.http, self.config)
            # Waiting is not subscribing: no hooks, never a cancel, and a restart's new
            # job is recorded, not waited on.
            quiet = dataclasses.replace(self.config, hooks=(), allow_cancel=False)
            hooked = Poller(self.store, api, self.config, follow_restarts=False)
            plain = Poller(self.store, api, quiet, follow_restarts=False)
            self.pollers = (hooked, plain)
        return self.pollers
