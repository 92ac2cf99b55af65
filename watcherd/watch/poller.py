"""The poller: every watched job on its own schedule, with the fewest requests.

A round starts when any job is due. With two or more live jobs, one list request
gives every job's status and progress (otherwise one retrieve does); the round
polls the jobs that are due and those whose status moved, and moves the others'
next look to one interval on, so all schedules fall in step with the list requests.
Running jobs get their metrics every `poll.metrics_interval`, fetched incrementally
from the highest stored step (inclusive, so a late eval row at that step is not
missed). A job that turns terminal gets a retrieve and one last metrics fetch,
recorded in the same transaction as its transition and its hook deliveries. A
status is never held back by its metrics: when the metrics fetch fails, the status
(and a transition with its deliveries) is recorded alone, and the metrics are
fetched again on a backoff of their own; a finished job stays in the rounds for that
(`metrics_pending`) until its rows are in. Event logs come through one hook point,
`watch.events.EventFeed` (a failed log fetch holds no status back either); a job the
service restarts as a new one (a `job_restarted` event) has the new one watched.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import structlog

from watcherd.alerts.state import AlertState
from watcherd.api.client import ApiClient, ApiStats, Job
from watcherd.config import Config
from watcherd.errors import (
    ApiError,
    AuthError,
    LeaseLostError,
    NotFoundError,
    RateLimitedError,
    StoreError,
)
from watcherd.eventlog import price_facts
from watcherd.model import (
    KNOWN_STATUSES,
    MISSING,
    MetricFilter,
    MetricRecord,
    is_settled,
    is_terminal,
)
from watcherd.store import PollRecord, PollResult
from watcherd.store.interface import RowBatches, StoreApi
from watcherd.watch.alerting import AlertWatch
from watcherd.watch.cluster import Cluster
from watcherd.watch.events import EventFeed
from watcherd.watch.schedule import (
    QUIET_STATUSES,
    JobSchedule,
    PollerStats,
    backoff,
    next_look,
    settled_cursor,
)

log = structlog.get_logger("watcherd.watch.poller")

#: After this many 404s in a row a job is marked missing.
NOT_FOUND_LIMIT = 3
#: A round also takes the jobs due within this fraction of `min_interval` from now.
COALESCE = 0.2
#: `--until-done` stops waiting for a finished job's metrics after this many failed
#: fetches in a row (the daemon itself keeps trying, backing off).
CATCH_UP_LIMIT = 5


class Poller:
    """Polls watched jobs, records what it sees, wakes the dispatcher on new deliveries."""

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
        self._limiter = anyio.CapacityLimiter(self._poll_slots(config))
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
            sched.alerts = AlertState.from_json(state.alert_state)
            sched.cancel_pending = state.cancel_state == "intent"
            if sched.cancel_pending and is_settled(sched.status):
                ended.append(sched)
        for sched in ended:  # no poll will come for these: settle their cancel now
            await self.alerting.settle_cancel(self.api, sched, sched.status or "")

    # -- the loop --------------------------------------------------------

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

    # -- sharing the work (PostgreSQL) -------------------------------------

    async def claim(self) -> None:
        """Renew and claim this daemon's job leases; follow the shared job list.

        A job gained from another daemon continues from what that daemon stored (its
        status and cursor), so nothing is fetched twice or skipped. When the held set
        changes, the watched set is read again: a job another host added or removed
        shows here too.
        """
        mine = await self.store.claim_work()
        if mine is None:
            return
        gained = mine - (self.mine or frozenset())
        lost = (self.mine or frozenset()) - mine
        self.mine = mine
        if gained or lost:
            await self.load_jobs()
            self._continue(gained & frozenset(self.jobs))
            log.info("poll.leases", held=len(mine), gained=len(gained), lost=len(lost))
            self.wake()

    def _continue(self, gained: frozenset[str]) -> None:
        """Jobs gained keep the schedule their last holder kept: due one interval (and
        their rows one metrics interval) after it last polled them, or now if that has
        passed (it died, or never polled them). A rebalance costs no extra requests."""
        wall, now, poll = self.wall(), self.monotonic(), self.config.poll
        for job_id in gained:
            sched, seen = self.jobs[job_id], self._seen.get(job_id, 0.0)
            sched.next_at = now + max(0.0, seen + poll.interval - wall)
            sched.metrics_at = now + max(0.0, seen + poll.metrics_interval - wall)

    async def claim_forever(self) -> None:
        """Claim when due (a renewal, or another daemon's lease running out) and keep the
        request budget split among the live daemons; a failure is retried, not fatal."""
        while True:
            every, started = self.config.store.lease / 4, self.monotonic()
            try:
                await self.claim()
                if self.cluster is not None:
                    await self.cluster.sync_budget(self.api)
                due = self.store.next_claim_in
            except StoreError as exc:
                log.warning("store.claim_failed", error=str(exc), retry_in=round(every, 1))
                due = None
            wait = every if due is None else min(due, every)
            await anyio.sleep(max(0.05, started + wait - self.monotonic()))

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

    async def run(self) -> None:
        """Poll forever, rounds overlapping: a slow or stalled job holds no other."""
        async with anyio.create_task_group() as tg:
            if self.cluster is not None:
                await self.claim()
                tg.start_soon(self.claim_forever)
            while True:
                idle = self._take_round()
                if idle:
                    tg.start_soon(self._round, tg, idle)
                await self._sleep_until_due()

    async def poll_due(self) -> None:
        """One round, awaited: the jobs that are due, and those whose status moved."""
        idle = self._take_round()
        if idle:
            async with anyio.create_task_group() as tg:
                await self._round(tg, idle)
        self.stats.last_progress = self.monotonic()

    def _take_round(self) -> list[JobSchedule]:
        """When a job is due: the round's jobs (every live job not being polled), now busy."""
        now = self.monotonic()
        if now < self._auth_until:
            return []
        idle = [j for j in self.live_jobs() if j.job_id not in self._busy]
        if not any(j.next_at <= now for j in idle):
            return []
        self.stats.rounds += 1
        self._busy.update(j.job_id for j in idle)
        return idle

    async def _round(self, tg: anyio.abc.TaskGroup, idle: list[JobSchedule]) -> None:
        """One list request for the round, then the chosen jobs' polls (see `_start_polls`)."""
        try:
            listed = await self._list_statuses([j for j in idle if not j.metrics_pending])
            chosen = self._choose(idle, listed)
        except BaseException:
            self._release(*idle)
            raise
        self._release(*(j for j in idle if j.job_id not in chosen))
        polls = [(s, listed.get(s.job_id)) for s in idle if s.job_id in chosen]
        self._start_polls(tg, polls, self._poll_released)

    def _start_polls(
        self,
        tg: anyio.abc.TaskGroup,
        polls: list[tuple[JobSchedule, Job | None]],
        poll: Callable[[JobSchedule, Job | None], Awaitable[None]],
    ) -> None:
        """Run `polls` on as many workers as there are poll slots, each taking the next.

        Not a task per job: with 10,000 jobs that many waiting tasks cost about 15 MB.
        A slow or stalled job still holds only its own worker.
        """
        pending = iter(polls)

        async def worker() -> None:
            for sched, listed in pending:
                await poll(sched, listed)

        for _ in range(min(len(polls), self._poll_slots(self.config))):
            tg.start_soon(worker)

    def _choose(self, idle: Sequence[JobSchedule], listed: dict[str, Job]) -> set[str]:
        """The jobs this round polls: those due (or nearly), and those whose status moved.

        The list showed the others unchanged, so their next look moves to one interval
        from now: every job's schedule falls in step with the list requests, and one
        list request keeps serving all of them.
        """
        now = self.monotonic()
        horizon = now + COALESCE * self.config.poll.min_interval
        chosen: set[str] = set()
        for sched in idle:
            job = listed.get(sched.job_id)
            if sched.next_at <= horizon or (job is not None and job.status != sched.status):
                chosen.add(sched.job_id)
            elif job is not None:
                sched.next_at = self._next_look(sched, job, changed=False)
        return chosen

    async def _poll_released(self, sched: JobSchedule, listed: Job | None) -> None:
        try:
            await self._poll_job(sched, listed)
        finally:
            self._release(sched)

    def _release(self, *done: JobSchedule) -> None:
        """These jobs' polls ended: the loop may schedule them again."""
        self._busy.difference_update(j.job_id for j in done)
        self.stats.last_progress = self.monotonic()
        self.wake()

    async def poll_once(self) -> None:
        """Poll every live job once, whatever its schedule (for `run --once`)."""
        if self.config.store.url is not None:
            await self.claim()
        for sched in self.live_jobs():
            sched.next_at = sched.metrics_at = 0.0
        await self.poll_due()

    async def _sleep_until_due(self) -> None:
        self.stats.last_progress = self.monotonic()
        live = [j for j in self.live_jobs() if j.job_id not in self._busy]
        now = self.monotonic()
        delay = min((j.next_at for j in live), default=now + 5.0) - now
        delay = max(self._auth_until - now, delay, 0.05)
        self._wake = anyio.Event()
        with anyio.move_on_after(min(delay, 5.0)):
            await self._wake.wait()

    async def _list_statuses(self, covered: Sequence[JobSchedule]) -> dict[str, Job]:
        """One list request when it saves requests; {} when retrieve is cheaper or it failed."""
        if len(covered) < 2:
            return {}
        if self.cluster is not None and self.mine is not None:
            return await self._shared_statuses(self.cluster)
        try:
            jobs = await self.api.list_jobs()
        except AuthError as exc:
            self._auth_failed(exc)
            return {}
        except ApiError as exc:
            log.warning("poll.list_failed", error=str(exc))
            return {}
        return {job.id: job for job in jobs}

    async def _shared_statuses(self, cluster: Cluster) -> dict[str, Job]:
        """The round's list as one daemon fetched it (up to 1.5 intervals old).

        An entry older than what we know of a job is kept only if it shows the status
        we know (it still says "no change"); otherwise it is left out, so a stale status
        is never recorded after a newer one.
        """
        try:
            listing = await cluster.listing(self.api)
        except AuthError as exc:
            self._auth_failed(exc)
            return {}
        except (ApiError, StoreError, ValueError, KeyError) as exc:
            log.warning("poll.list_failed", error=str(exc))
            return {}
        if listing is None:
            return {}
        seen, jobs = self._seen, self.jobs
        return {
            j: job
            for j, job in listing.jobs.items()
            if listing.at >= seen.get(j, 0.0) or (j in jobs and jobs[j].status == job.status)
        }

    # -- one job ---------------------------------------------------------

    async def _poll_job(self, sched: JobSchedule, listed: Job | None) -> None:
        async with self._limiter:
            if self.mine is not None and sched.job_id not in self.mine:
                return  # given back or lost while it waited for a slot: its holder polls it
            try:
                await self._poll_job_now(sched, listed)
            except StoreError as exc:
                if self.mine is None:  # a single daemon's own database failing: as before
                    raise
                self._store_failed(sched, exc)

    async def _poll_job_now(self, sched: JobSchedule, listed: Job | None) -> None:
        if self.monotonic() < self._auth_until:
            return
        if sched.metrics_pending:
            await self._catch_up(sched)
            return
        try:
            job = listed
            if job is None or self._needs_full_object(sched, job):
                job = await self.api.retrieve(sched.job_id)
        except NotFoundError as exc:
            await self._not_found(sched, exc)
            return
        except AuthError as exc:
            self._auth_failed(exc)
            return
        except ApiError as exc:
            await self._failed(sched, exc)
            return
        changed = job.status != sched.status
        metrics, error = await self._try_metrics(sched, job.status, changed=changed)
        events = await self._try_events(job, changed=changed, retrieved=job is not listed)
        await self._record(sched, job, metrics, error, events, full=changed or job is not listed)

    def _store_failed(self, sched: JobSchedule, exc: StoreError) -> None:
        """On a shared database: a lost lease drops the job; an outage backs it off."""
        if isinstance(exc, LeaseLostError):
            self.mine = (self.mine or frozenset()) - {sched.job_id}
            log.warning("poll.lease_lost", job_id=sched.job_id)
            return
        sched.failures += 1
        delay = self._backoff(sched.failures)
        sched.next_at = self.monotonic() + delay
        log.warning("store.write_failed", job_id=sched.job_id, error=str(exc), retry_in=delay)

    def _needs_full_object(self, sched: JobSchedule, listed: Job) -> bool:
        """A job turning terminal gets a retrieve: its complete last object goes to hooks.

        Other changes keep the list's object, which holds the same fields but `events`.
        """
        return listed.status != sched.status and is_terminal(listed.status)

    async def _try_metrics(
        self, sched: JobSchedule, status: str, *, changed: bool
    ) -> tuple[list[MetricRecord], ApiError | None]:
        """New rows, or the error that kept them: the status is recorded either way."""
        try:
            return await self._fetch_metrics(sched, status, changed=changed), None
        except AuthError as exc:
            self._auth_failed(exc)
            return [], exc
        except ApiError as exc:
            return [], exc

    async def _try_events(
        self, job: Job, *, changed: bool, retrieved: bool
    ) -> list[dict[str, Any]] | None:
        """The job's event log when due (None: not this poll); a failure holds no status back.

        A failed fetch leaves the log due, so the job's next poll fetches it again.
        """
        try:
            return await self.events.fetch(
                self.api, self.config.poll, job, changed=changed, retrieved=retrieved
            )
        except AuthError as exc:
            self._auth_failed(exc)
        except ApiError as exc:
            self.stats.errors += 1
            log.warning("poll.events_failed", job_id=job.id, error=str(exc))
        return None

    async def _fetch_metrics(
        self, sched: JobSchedule, status: str, *, changed: bool
    ) -> list[MetricRecord]:
        """New rows from the cursor on, when due; always on a status change.

        On SQLite a big body is stored batch by batch as it arrives (each batch one
        transaction, the cursor moving on with it) and the last batch is returned, for
        `_record`; PostgreSQL takes the whole page in one transaction.
        """
        # A job cancelled mid-run may have rows we never saw: only the statuses before
        # training (QUIET_STATUSES) are sure to have none.
        if status in QUIET_STATUSES and sched.max_step is None:
            return []
        now = self.monotonic()
        if not changed and now < sched.metrics_at and not self.alerting.look_now(sched, status):
            return []
        flt = MetricFilter(global_step_from=sched.cursor)
        batches = self._batches

        async def store_batch(batch: list[MetricRecord]) -> None:
            assert batches is not None
            memory = self.alerting.absorb(sched, status, batch)
            await batches.record_rows(sched.job_id, batch, self.wall(), memory.to_json())
            sched.alerts = memory
            self._took_rows(sched, batch)

        on_batch = None if batches is None else store_batch
        try:
            rows = await self.api.metric_records(sched.job_id, flt, on_batch)
        except NotFoundError as exc:
            # The job was just seen, so this 404 means "no metrics (yet)", not a missing
            # job: record the status anyway; the rows come with a later fetch.
            log.info("poll.metrics_not_found", job_id=sched.job_id, error=str(exc))
            rows = []
        sched.metrics_at = now + self.config.poll.metrics_interval
        sched.metrics_failures = 0
        sched.fetched = True
        return rows

    async def _catch_up(self, sched: JobSchedule) -> None:
        """A finished job whose last metrics fetch failed: fetch them again, from the cursor.

        Its transition and hooks are recorded already; this page is its rows and cursor.
        """
        status = sched.status or ""
        try:
            rows = await self._fetch_metrics(sched, status, changed=True)
        except AuthError as exc:
            self._auth_failed(exc)
            return
        except ApiError as exc:
            self._metrics_failed(sched, status, exc)
            error = f"metrics: {exc}"
            await self.store.record_failure(sched.job_id, self.wall(), error, not_found=False)
            return
        record = PollRecord(sched.job_id, self.wall(), job=None, status=status, records=rows)
        result = await self.store.record_poll(record)
        self._took_rows(sched, rows)
        sched.metrics_pending = sched.rate_limited = False
        self.stats.polls += 1
        log.info("poll.metrics_caught_up", job_id=sched.job_id, new_rows=result.new_rows)

    async def _record(
        self,
        sched: JobSchedule,
        job: Job,
        metrics: list[MetricRecord],
        error: ApiError | None,
        events: list[dict[str, Any]] | None,
        *,
        full: bool,
    ) -> None:
        observed = self.wall()
        raw = job.raw  # decoded once (a listed job is kept as its text) for all three uses
        total_price, token_count = price_facts(raw)
        record = PollRecord(
            job_id=sched.job_id,
            observed_at=observed,
            job=raw if full else None,
            status=job.status,
            hooks=self.config.hooks,
            seconds_remaining=job.seconds_remaining,
            records=metrics,
            metrics_error=None if error is None else str(error),
            events=events,
            total_price=total_price,
            token_count=token_count,
            evaluation=self.alerting.evaluate(sched, job.status, raw, metrics),
        )
        result = await self.store.record_poll(record)
        self._seen[sched.job_id] = observed
        sched.rate_limited = False
        if error is not None:
            self._metrics_failed(sched, job.status, error)
        self._after_record(sched, job, metrics, result)
        await self._after_alerts(sched, record)
        if result.restarts and self.follow_restarts:
            await self._follow(sched.job_id, result.restarts)

    async def _after_alerts(self, sched: JobSchedule, record: PollRecord) -> None:
        """Keep the rules' new memory; make a cancel that was just decided or is pending
        (only where cancelling is allowed: never from `wait`)."""
        evaluation = record.evaluation
        if evaluation is not None:
            sched.alerts = evaluation.state
            sched.cancel_pending = sched.cancel_pending or evaluation.cancel is not None
        if sched.cancel_pending and record.status is not None and self.config.allow_cancel:
            result = await self.alerting.settle_cancel(self.api, sched, record.status)
            if result is not None and result.transition is not None:
                sched.status = result.transition[1]
                sched.next_at = self.monotonic() + self.config.poll.min_interval
            if result is not None and result.deliveries:
                self.on_deliveries()

    async def _follow(self, job_id: str, restarts: Sequence[str]) -> None:
        """Watch the jobs the service restarted `job_id` as (the store already does)."""
        for new_id, state in (await self.store.job_states(only=restarts)).items():
            if new_id not in self.jobs:
                self.jobs[new_id] = JobSchedule(new_id, state.status, state.max_step)
            log.info("job.restarted", job_id=job_id, new_job_id=new_id)
        self.wake()

    def _after_record(
        self, sched: JobSchedule, job: Job, metrics: list[MetricRecord], result: PollResult
    ) -> None:
        self.stats.polls += 1
        self.stats.last_success_at = self.wall()
        self.stats.auth_error = None
        self._auth_failures = 0
        self._took_rows(sched, metrics)
        if result.transition is not None:
            log.info(
                "job.transition",
                job_id=sched.job_id,
                from_status=result.transition[0],
                to_status=result.transition[1],
                new_rows=result.new_rows,
            )
        if job.status not in KNOWN_STATUSES and job.status not in self._warned_statuses:
            self._warned_statuses.add(job.status)
            log.warning("job.unknown_status", job_id=sched.job_id, status=job.status)
        sched.status = job.status
        sched.failures = 0
        changed = result.transition is not None
        if not sched.metrics_pending:  # else the metrics' own retry time stands
            sched.next_at = self._next_look(sched, job, changed=changed)
        if result.deliveries:
            self.on_deliveries()

    @staticmethod
    def _took_rows(sched: JobSchedule, rows: list[MetricRecord]) -> None:
        """Move the job's highest step and metrics cursor past `rows`, just stored."""
        if rows:
            top = max(r[1] for r in rows)
            sched.max_step = top if sched.max_step is None else max(sched.max_step, top)
            sched.cursor = settled_cursor(rows, sched.cursor)

    def _next_look(self, sched: JobSchedule, job: Job, *, changed: bool) -> float:
        return next_look(self.config.poll, sched, job, changed=changed, now=self.monotonic())

    # -- failures --------------------------------------------------------

    async def _failed(self, sched: JobSchedule, exc: ApiError) -> None:
        self.stats.errors += 1
        sched.failures += 1
        delay = self._backoff(sched.failures)
        sched.rate_limited = isinstance(exc, RateLimitedError)
        if isinstance(exc, RateLimitedError):
            delay = max(delay, exc.resume_at - self.wall())
        sched.next_at = self.monotonic() + delay
        log.warning(
            "poll.failed",
            job_id=sched.job_id,
            error=str(exc),
            error_type=type(exc).__name__,
            retry_in=round(delay, 1),
        )
        await self.store.record_failure(sched.job_id, self.wall(), str(exc), not_found=False)

    def _metrics_failed(self, sched: JobSchedule, status: str, exc: ApiError) -> None:
        """The metrics fetch failed: retry it on a backoff of its own; a finished job owes it."""
        self.stats.errors += 1
        sched.metrics_failures += 1
        delay = self._backoff(sched.metrics_failures)
        sched.rate_limited = isinstance(exc, RateLimitedError)
        if isinstance(exc, RateLimitedError):
            delay = max(delay, exc.resume_at - self.wall())
        sched.metrics_at = self.monotonic() + delay
        sched.metrics_pending = is_terminal(status)
        if sched.metrics_pending:
            sched.next_at = sched.metrics_at
        log.warning(
            "poll.metrics_failed",
            job_id=sched.job_id,
            status=status,
            error=str(exc),
            error_type=type(exc).__name__,
            retry_in=round(delay, 1),
        )

    def _backoff(self, failures: int) -> float:
        return backoff(self.config.poll, failures, self.rng)

    async def _not_found(self, sched: JobSchedule, exc: NotFoundError) -> None:
        count = await self.store.record_failure(sched.job_id, self.wall(), str(exc), not_found=True)
        sched.failures += 1
        sched.next_at = self.monotonic() + self._backoff(sched.failures)
        if count < NOT_FOUND_LIMIT or sched.status == MISSING:
            log.warning("poll.not_found", job_id=sched.job_id, count=count, error=str(exc))
            return
        result = await self.store.mark_missing(sched.job_id, self.wall(), self.config.hooks)
        sched.status = MISSING
        sched.next_at = self.monotonic() + self.config.poll.max_backoff
        log.error("job.missing", job_id=sched.job_id, not_found_count=count)
        if result.deliveries:
            self.on_deliveries()

    def _auth_failed(self, exc: AuthError) -> None:
        """401/403: pause all polling, backing off; a reload with a new key resumes at once."""
        if self.stats.auth_error is None:
            log.error(
                "api.auth_failed",
                error=str(exc),
                status=exc.status,
                hint="check the API key; polling is paused until it works",
            )
        self.stats.auth_error = f"API key refused ({exc.status})"
        self.stats.errors += 1
        self._auth_failures += 1
        self._auth_until = self.monotonic() + self._backoff(self._auth_failures)
