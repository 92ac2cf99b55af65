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

from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.abc
import structlog

from watcherd.api.client import Job
from watcherd.errors import ApiError, AuthError
from watcherd.watch.pollbase import CATCH_UP_LIMIT
from watcherd.watch.polljob import JobPolls
from watcherd.watch.pollleases import LeaseSharing
from watcherd.watch.schedule import JobSchedule

__all__ = ["CATCH_UP_LIMIT", "Poller"]

log = structlog.get_logger("watcherd.watch.poller")

#: A round also takes the jobs due within this fraction of `min_interval` from now.
COALESCE = 0.2


class Poller(LeaseSharing, JobPolls):
    """Polls watched jobs, records what it sees, wakes the dispatcher on new deliveries."""

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
