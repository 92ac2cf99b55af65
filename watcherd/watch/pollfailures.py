"""The poller's failure handling: backoffs, 404s, a refused key, a failing shared store."""

from __future__ import annotations

import structlog

from watcherd.errors import (
    ApiError,
    AuthError,
    LeaseLostError,
    NotFoundError,
    RateLimitedError,
    StoreError,
)
from watcherd.model import MISSING, is_terminal
from watcherd.watch.pollbase import PollerBase
from watcherd.watch.schedule import JobSchedule

log = structlog.get_logger("watcherd.watch.poller")

#: After this many 404s in a row a job is marked missing.
NOT_FOUND_LIMIT = 3


class PollFailures(PollerBase):
    """What a failed request or write does to a job's schedule (and to polling as a whole)."""

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

    async def _failed(self, sched: JobSchedule, exc: ApiError) -> None:
        self.stats.errors += 1
        sched.failures += 1
        delay = self._retry_in(sched, sched.failures, exc)
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
        delay = self._retry_in(sched, sched.metrics_failures, exc)
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

    def _retry_in(self, sched: JobSchedule, failures: int, exc: ApiError) -> float:
        """The backoff after `failures` in a row, or the host's Retry-After pause if that
        ends later (the job then marked as held by it, for `pause_changed`)."""
        delay = self._backoff(failures)
        sched.rate_limited = isinstance(exc, RateLimitedError)
        if isinstance(exc, RateLimitedError):
            delay = max(delay, exc.resume_at - self.wall())
        return delay

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
