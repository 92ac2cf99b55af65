"""Sharing the work on a PostgreSQL store: job leases, the shared job list."""

from __future__ import annotations

import anyio
import structlog

from watcherd.api.client import Job
from watcherd.errors import ApiError, AuthError, StoreError
from watcherd.watch.cluster import Cluster
from watcherd.watch.pollfailures import PollFailures

log = structlog.get_logger("watcherd.watch.poller")


class LeaseSharing(PollFailures):
    """Claims this daemon's jobs and reads the list one daemon fetched for all."""

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
