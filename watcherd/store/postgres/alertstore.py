"""PgStore's alert and cancel methods, fenced in a cluster like the other writes of a poll.

Only the daemon holding a job's lease polls it, so only it runs the rules: episodes,
their deliveries and a cancel intent are written in `record_poll`'s fenced
transaction, once. The cancel:

- `start_cancel` counts a call before it is made, fenced: a daemon whose lease passed
  to another gets LeaseLostError and makes no call;
- `finish_cancel` with the service's answer is a poll's write, fenced the same way;
- `finish_cancel` alone (an outcome to retry, or settling the intent of a job found
  ended) is fenced too, unless the stored job has ended (terminal or missing): no call
  is made for such a job (`watch.alerting.settle_cancel`), no daemon holds a finished
  job's lease, and only a pending intent moves (`store.alerting`), so any daemon may
  settle it, to the same answer;
- `user_cancel` is a person's (`watcherd cancel`), not a daemon's: not fenced.

A daemon frozen between counting its call and making it for longer than its lease may
call after the daemon that took the job over called too (it found the intent pending
and the job still running): the bound hook deliveries have, for the same reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from watcherd.model import Alert, CancelRecord, Delivery, is_settled
from watcherd.store import alerting
from watcherd.store.postgres import leases, writer
from watcherd.store.postgres.alerting import PgDb, on_pg
from watcherd.store.postgres.sql import Conn, one
from watcherd.store.records import PollRecord, PollResult
from watcherd.store.rows import page_rows

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate[Conn, P], Awaitable[T]]
Fence = tuple[str, int | None] | None


class AlertMethods:
    """Alert episodes and cancels (mixed into PgStore, which runs the transactions)."""

    if TYPE_CHECKING:  # PgStore's

        async def _read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

        async def _write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

        def _fence(self, job_id: str) -> Fence: ...

    async def alerts(self, job_id: str | None = None, *, open_only: bool = False) -> list[Alert]:
        """Alert episodes, oldest first (one job's, or every job's); only open ones if asked."""
        return await self._read(on_pg(alerting.alerts), job_id, open_only=open_only)

    async def open_alert_counts(self) -> dict[str, int]:
        """Open alert episodes of watched jobs, by rule."""
        return await self._read(on_pg(alerting.open_counts))

    async def cancels(self, job_id: str | None = None) -> dict[str, CancelRecord]:
        """Cancel records by job."""
        return await self._read(on_pg(alerting.cancels), job_id)

    async def start_cancel(self, job_id: str, now: float) -> int:
        """Count a cancel call about to be made (0: none is pending); fenced."""
        op = on_pg(alerting.start_cancel)
        return await self._write(leases.fenced, self._fence(job_id), job_id, op, job_id, now)

    async def finish_cancel(
        self,
        job_id: str,
        now: float,
        state: str,
        error: str | None = None,
        poll: PollRecord | None = None,
    ) -> PollResult | None:
        """A cancel's outcome, with the job as the service answered (`poll`), in one transaction."""
        fence = self._fence(job_id)
        if poll is None:
            await self._write(_settle, fence, job_id, now, state, error)
            return None
        return await self._write(leases.fenced, fence, job_id, _answered, poll, now, state, error)

    async def user_cancel(self, job_id: str, now: float, reason: str) -> None:
        """Record that a person cancelled the job (`watcherd cancel`)."""
        await self._write(_user_cancel, job_id, now, reason)

    async def delivery_extras(self, delivery: Delivery) -> dict[str, Any]:
        """The payload's `alert`, `eta` and `cancel` parts for one delivery."""
        return await self._read(on_pg(alerting.delivery_extras), delivery)


async def _settle(
    conn: Conn, fence: Fence, job_id: str, now: float, state: str, error: str | None
) -> None:
    """A cancel's outcome alone: fenced unless the job has ended (see the module's notes)."""
    if fence is not None:
        await leases.lock_job(conn, job_id)
        found = await one(conn, "SELECT status FROM jobs WHERE job_id = %s", (job_id,))
        if not is_settled(None if found is None else found[0]):
            await leases.fence_job(conn, job_id, *fence)
    await alerting.finish_cancel(PgDb(conn), job_id, now, state, error)


async def _answered(
    conn: Conn,
    poll: PollRecord,
    now: float,
    state: str,
    error: str | None,
) -> PollResult:
    """The service's answer to the cancel recorded as a poll, and the cancel's outcome."""
    page = page_rows(poll.job_id, poll.metrics, poll.records)
    result = await writer.record_poll(conn, poll, page)
    await alerting.finish_cancel(PgDb(conn), poll.job_id, now, state, error)
    return result


async def _user_cancel(conn: Conn, job_id: str, now: float, reason: str) -> None:
    """The job's row (if never seen) and a person's cancel, in one transaction."""
    await writer.ensure_jobs(conn, [job_id], now)
    await alerting.user_cancel(PgDb(conn), job_id, now, reason)
