"""The Store: one connection, every write serialized, shielded and in BEGIN IMMEDIATE."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import aiosqlite
import anyio
import anyio.lowlevel
import structlog

from watcherd.errors import (
    StoreBusyError,
    StoreError,
    StoreInterruptedError,
    StoreUnusableError,
)
from watcherd.model import (
    Alert,
    CancelRecord,
    Delivery,
    JobOverview,
    MetricFilter,
    MetricRecord,
    MetricRow,
    MetricsSummary,
    PayloadFacts,
    Transition,
    loads_exact,
)
from watcherd.spend import Period, SpendRow
from watcherd.store import alerting, calls, connection, inline, outbox, readers, writer
from watcherd.store.alerting import on_sqlite as _on
from watcherd.store.calls import CallGuard
from watcherd.store.records import HookLike, JobState, PollRecord, PollResult
from watcherd.store.rows import PageRows, page_rows, record_rows

log = structlog.get_logger("watcherd.store")

#: Event-loop passes a group commit waits at most while polls keep joining it.
JOIN_PASSES = 8

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate[aiosqlite.Connection, P], Awaitable[T]]

HOST_PAUSE_PREFIX: Final = "host_pause:"
#: Seconds a CLI command waits for another process's write lock before it gives up.
LOCK_PATIENCE: Final = 30.0
#: Errors of the database rather than of a page: a group commit that meets one ends.
_FINAL: Final = (StoreUnusableError, StoreInterruptedError, StoreBusyError)
#: No bounds, no sampling: every row.
EVERYTHING: Final = MetricFilter()


class _DaemonRunning:
    """`Store.daemon_running(path)` or `store.daemon_running()`: is the daemon lock held?"""

    def __get__(self, obj: Store | None, owner: type[Store]) -> Callable[..., bool]:
        if obj is None:
            return connection.lock_held
        return functools.partial(connection.lock_held, obj.path)


class Store:
    """watcherd's SQLite database. Open with `Store.open(path, writer=...)`."""

    daemon_running: Final = _DaemonRunning()

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        *,
        writer: bool,
        guard: CallGuard | None = None,
    ) -> None:
        self._conn = conn
        self.path = path
        self.writer = writer
        self._guard = guard or CallGuard(path, patience=LOCK_PATIENCE, note_fd=None)
        self._lock = anyio.Lock()
        self._pending: list[_PendingPoll] = []  # polls waiting for the next group commit
        self._files = connection.file_identity(path)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path, *, writer: bool, lock: bool | None = None, patience: float = LOCK_PATIENCE
    ) -> AsyncIterator[Store]:
        """Open the database; a writer takes the daemon lock unless `lock=False`.

        A writer creates the file (0600) and migrates it. A reader opens it read-only
        and raises StoreError if it does not exist or has an older schema. The daemon
        (holding the lock) waits out another process's lock as long as it takes;
        other openers give up after `patience` seconds (StoreBusyError).
        """
        path = Path(path)
        fd = connection.acquire_lock(path) if (writer if lock is None else lock) else None
        try:
            guard = CallGuard(path, patience=None if fd is not None else patience, note_fd=fd)
            with anyio.CancelScope(shield=True):
                conn = await connection.connect(path, writer=writer, guard=guard)
            try:
                yield cls(conn, path, writer=writer, guard=guard)
            finally:
                with anyio.CancelScope(shield=True):
                    await _close(conn, path)
        finally:
            if fd is not None:
                connection.release_lock(fd)

    @staticmethod
    def locked_since(path: Path) -> float | None:
        """Since when the daemon of `path` waits for another process's write lock, if it does."""
        return connection.locked_since(path)

    @property
    def busy_for(self) -> float | None:
        """Seconds the current database call has run; None when none runs."""
        since = self._guard.busy_since
        return None if since is None else time.monotonic() - since

    @property
    def lock_wait_since(self) -> float | None:
        """Since when (epoch seconds) this store waits for another process's write lock."""
        return self._guard.locked_since

    def check_files(self) -> None:
        """StoreUnusableError if the database files were deleted or replaced since opening.

        SQLite would go on writing to the deleted files, and everything written since
        would be lost when the daemon exits.
        """
        if connection.file_identity(self.path) != self._files:
            raise StoreUnusableError(
                str(self.path),
                "the database file (or its -wal or -shm) was deleted or replaced while"
                " watcherd was running; restore it or start afresh",
            )

    async def cut_long_calls(self, grace: float) -> None:
        """The daemon is stopping: cut short any call that has run longer than `grace`.

        Runs until cancelled. A call cut short rolls back whole and ends as a
        cancellation (StoreInterruptedError for a shielded caller); a wait for
        another process's lock ends at once.
        """
        self._guard.stopping.set()
        while True:
            since = self._guard.busy_since
            if since is not None and time.monotonic() - since > grace:
                await self._conn.interrupt()
            await anyio.sleep(min(grace / 4, 0.1))

    async def _call(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """`attempt()` under the lock, shielded, retried while another process holds the lock."""
        try:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    result = await self._guard.run(attempt, what)
        except StoreInterruptedError:
            await anyio.lowlevel.checkpoint_if_cancelled()  # a stop: end as the cancellation
            raise
        return result

    async def _write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` in its own BEGIN IMMEDIATE transaction, shielded from cancellation."""
        if not self.writer:
            raise StoreError(f"{self.path}: opened read-only")
        call = functools.partial(self._transaction, "BEGIN IMMEDIATE", op, *args, **kwargs)
        return await self._call(call, _name(op))

    async def _read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` in a read transaction, so its queries see one snapshot."""
        call = functools.partial(self._transaction, "BEGIN", op, *args, **kwargs)
        return await self._call(call, _name(op))

    async def _single(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op`, which must issue exactly one statement, outside any transaction.

        One statement reads one snapshot by itself, so it needs no BEGIN and COMMIT
        (two trips to the database thread saved).
        """
        return await self._call(functools.partial(op, self._conn, *args, **kwargs), _name(op))

    async def _transaction(self, begin: str, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`op` in one transaction, rolled back whole on any failure; the caller holds the lock.

        The whole transaction, BEGIN to COMMIT, runs in one trip to the database thread
        (`inline`), not one trip per statement.
        """
        body = functools.partial(op, **kwargs) if kwargs else op
        return await inline.run_inline(self._conn, _in_transaction, begin, body, *args)

    # -- the watched set ---------------------------------------------------

    async def sync_watched(
        self, entries: Sequence[tuple[str, str | None]], now: float, *, source: str | None = None
    ) -> None:
        """Watch exactly these (job_id, note) pairs; other jobs become unwatched, kept.

        `source` is ignored: one daemon, one host, one list.
        """
        await self._write(writer.sync_watched, entries, now)

    async def change_watched(
        self, add: Sequence[tuple[str, str | None]], remove: Sequence[str], now: float
    ) -> None:
        """Watch `add` and unwatch `remove`; other jobs stay as they are."""
        await self._write(writer.change_watched, add, remove, now)

    async def ensure_jobs(self, job_ids: Sequence[str], now: float | None = None) -> None:
        """Create unwatched rows for jobs never seen (for `wait` without a daemon)."""
        await self._write(writer.ensure_jobs, job_ids, time.time() if now is None else now)

    async def job_states(self, only: Iterable[str] | None = None) -> dict[str, JobState]:
        """Scheduling state of the watched jobs, or of the stored jobs among `only`."""
        return await self._single(readers.job_states, None if only is None else frozenset(only))

    # -- polls -----------------------------------------------------------------

    async def record_poll(self, rec: PollRecord) -> PollResult:
        """Rows, job fields, transition and outbox rows of one page, in one transaction.

        Group commit: polls that arrive while another transaction runs are written
        together in the next one (each page still whole), so a round of many jobs
        costs one commit, not one per job; the poll that starts a commit lets the event
        loop run on while each pass brings another page (`_let_polls_join`). If that
        shared transaction fails, each page is written alone, so one bad page never
        holds back the others.
        """
        if not self.writer:
            raise StoreError(f"{self.path}: opened read-only")
        pending = _PendingPoll(rec, page_rows(rec.job_id, rec.metrics, rec.records))
        self._pending.append(pending)
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if pending.outcome is None:
                    await self._let_polls_join()
                    batch, self._pending = self._pending, []
                    await self._commit_polls(batch)
        if isinstance(pending.outcome, StoreInterruptedError):
            await anyio.lowlevel.checkpoint_if_cancelled()  # a stop: end as the cancellation
        if isinstance(pending.outcome, BaseException):
            raise pending.outcome
        assert pending.outcome is not None
        return pending.outcome

    async def _let_polls_join(self) -> None:
        """Let the event loop run while each pass brings another poll to the batch
        (at most `JOIN_PASSES` passes; no clock involved): polls whose answers are
        being read join this commit instead of each starting one."""
        for _ in range(JOIN_PASSES):
            waiting = len(self._pending)
            await anyio.lowlevel.cancel_shielded_checkpoint()
            if len(self._pending) == waiting:
                return

    async def _commit_polls(self, batch: list[_PendingPoll]) -> None:
        """Write `batch` in one transaction, or each page alone if that fails."""
        if len(batch) > 1:
            try:
                results = await self._guard.run(
                    functools.partial(self._transaction, "BEGIN IMMEDIATE", _record_all, batch),
                    "record_poll",
                )
            except _FINAL as exc:  # the database failed, not a page: no page alone does better
                for pending in batch:
                    pending.outcome = exc
                return
            except Exception as exc:  # a page failed the group: each is tried alone below
                log.info("store.group_commit_split", pages=len(batch), error=str(exc))
            else:
                for pending, result in zip(batch, results, strict=True):
                    pending.outcome = result
                return
        for pending in batch:
            call = functools.partial(
                self._transaction, "BEGIN IMMEDIATE", writer.record_poll, *pending.args()
            )
            try:
                pending.outcome = await self._guard.run(call, "record_poll")
            except Exception as exc:  # handed to the caller of this page's record_poll
                pending.outcome = exc

    async def record_rows(
        self,
        job_id: str,
        records: Sequence[MetricRecord],
        now: float,
        alert_state: str,
    ) -> int:
        """One batch of a big page's rows, in its own transaction; returns how many were new.

        The job's rows, max step and losses move on; its status, transition and hooks
        wait for the page's last batch, given to `record_poll`.
        """
        page = record_rows(job_id, records)
        return await self._write(writer.record_rows, page, now, alert_state)

    async def record_failure(
        self, job_id: str, observed_at: float, error: str, *, not_found: bool
    ) -> int:
        """Note a failed poll; returns the count of 404s in a row."""
        return await self._write(
            writer.record_failure, job_id, observed_at, error, not_found=not_found
        )

    async def mark_missing(
        self, job_id: str, observed_at: float, hooks: Sequence[HookLike]
    ) -> PollResult:
        """Transition the job to `missing` and queue the hooks that subscribe to it."""
        return await self._write(writer.mark_missing, job_id, observed_at, hooks)

    async def record_events(self, job_id: str, events: Sequence[dict[str, Any]], now: float) -> int:
        """Store API events not seen before (by created_at, type, message); return how many."""
        return await self._write(writer.record_events, job_id, events, now)

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored API events, in the order first seen."""
        return await self._read(readers.events, job_id)

    # -- daemon state --------------------------------------------------------

    async def set_state(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) one daemon-state value."""
        await self._write(writer.set_state, key, value)

    async def get_state(self, key: str) -> str | None:
        """One daemon-state value, or None."""
        return await self._single(readers.get_state, key)

    async def set_host_pause(self, host: str, until: float | None) -> None:
        """Pause every request to `host` until `until` (epoch seconds); None lifts it."""
        await self.set_state(HOST_PAUSE_PREFIX + host, None if until is None else repr(until))

    async def host_pauses(self) -> dict[str, float]:
        """Every stored host pause (expired ones included: compare with the clock)."""
        return _pauses(await self._single(readers.state_prefixed, HOST_PAUSE_PREFIX))

    async def clear_host_pauses(self) -> dict[str, float]:
        """Lift every stored host pause (`watcherd resume`); returns the ones lifted."""
        return _pauses(await self._write(writer.delete_state_prefixed, HOST_PAUSE_PREFIX))

    async def last_successful_poll(self) -> float | None:
        """When a poll was last recorded successfully."""
        value = await self.get_state(writer.LAST_POLL_KEY)
        return None if value is None else float(value)

    # -- the outbox ----------------------------------------------------------

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending or failed deliveries due at `now`, oldest first."""
        return await self._single(outbox.due, now, limit)

    async def start_attempt(self, delivery_id: str, now: float) -> int:
        """Mark running, count the attempt; returns the attempt number (1 for the first)."""
        return await self._write(outbox.start_attempt, delivery_id, now)

    async def finish_attempt(
        self,
        delivery_id: str,
        now: float,
        *,
        outcome: str,
        error: str | None,
        output_tail: str | None,
        next_attempt_at: float | None,
    ) -> None:
        """Record an attempt's outcome: delivered, failed (retry at next_attempt_at), dead."""
        await self._write(
            outbox.finish_attempt,
            delivery_id,
            now,
            outcome=outcome,
            error=error,
            output_tail=output_tail,
            next_attempt_at=next_attempt_at,
        )

    async def recover_interrupted(self, now: float) -> list[str]:
        """Deliveries a crash left running become failed, due now; returns their ids."""
        return await self._write(outbox.recover_interrupted, now)

    async def requeue(self, delivery_id: str, now: float) -> bool:
        """Same id back to pending, due now, attempts reset; False if unknown or running."""
        return await self._write(outbox.requeue, delivery_id, now)

    async def next_delivery_due(self) -> float | None:
        """When the next pending or failed delivery falls due."""
        return await self._single(outbox.next_due)

    async def delivery_context(
        self, delivery_id: str
    ) -> tuple[Delivery, dict[str, Any] | None, MetricsSummary]:
        """A delivery, its job's last job object and metrics summary: the payload's parts."""
        return await self._read(_delivery_context, delivery_id)

    async def spend(self) -> list[SpendRow]:
        """Every priced job's spend (see `watcherd.spend`)."""
        return await self._read(readers.spend)

    async def fire_budget(
        self, limits: Sequence[tuple[Period, int]], hooks: Sequence[HookLike], now: float
    ) -> list[str]:
        """Queue `budget.exceeded` deliveries for the periods over their limit (once each)."""
        return await self._write(writer.fire_budget, limits, hooks, now)

    async def payload_facts(self, job_id: str) -> PayloadFacts:
        """What a hook payload tells about a job beyond its object (one snapshot)."""
        return await self._read(readers.payload_facts, job_id)

    async def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        """Every delivery, or one job's, in creation order."""
        return await self._read(outbox.listing, job_id)

    async def delivery_counts(self) -> dict[str, int]:
        """Deliveries per state (`pending`, `dead`, ...), one cheap query."""
        return await self._single(readers.delivery_counts)

    # -- alerts and cancels ---------------------------------------------------

    async def alerts(self, job_id: str | None = None, *, open_only: bool = False) -> list[Alert]:
        """Alert episodes, oldest first (one job's, or every job's); only open ones if asked."""
        return await self._read(_on(alerting.alerts), job_id, open_only=open_only)

    async def open_alert_counts(self) -> dict[str, int]:
        """Open alert episodes of watched jobs, by rule."""
        return await self._single(_on(alerting.open_counts))

    async def cancels(self, job_id: str | None = None) -> dict[str, CancelRecord]:
        """Cancel records by job."""
        return await self._single(_on(alerting.cancels), job_id)

    async def start_cancel(self, job_id: str, now: float) -> int:
        """Record a cancel call about to be made; returns the attempt number."""
        return await self._write(_on(alerting.start_cancel), job_id, now)

    async def finish_cancel(
        self,
        job_id: str,
        now: float,
        state: str,
        error: str | None = None,
        poll: PollRecord | None = None,
    ) -> PollResult | None:
        """A cancel's outcome, with the job as the service answered (`poll`), in one transaction."""
        return await self._write(_finish_cancel, job_id, now, state, error, poll)

    async def user_cancel(self, job_id: str, now: float, reason: str) -> None:
        """Record that a person cancelled the job (`watcherd cancel`)."""
        await self._write(writer.ensure_jobs, [job_id], now)
        await self._write(_on(alerting.user_cancel), job_id, now, reason)

    async def delivery_extras(self, delivery: Delivery) -> dict[str, Any]:
        """The payload's `alert`, `eta` and `cancel` parts for one delivery."""
        return await self._read(_on(alerting.delivery_extras), delivery)

    # -- readers ----------------------------------------------------------------

    async def overview(self, *, include_unwatched: bool = False) -> list[JobOverview]:
        """One row per job for `watcherd list`."""
        return await self._read(readers.overview, include_unwatched=include_unwatched)

    async def job(self, job_id: str) -> tuple[JobOverview, dict[str, Any] | None] | None:
        """One job's overview and last job object, or None if never seen."""
        return await self._read(readers.job, job_id)

    async def transitions(self, job_id: str) -> list[Transition]:
        """A job's status changes, oldest first."""
        return await self._read(readers.transitions, job_id)

    async def metrics_json(self, job_id: str, flt: MetricFilter = EVERYTHING) -> list[str]:
        """Stored JSON texts under `list_metrics` semantics, in API order."""
        return await self._read(readers.metrics_json, job_id, flt)

    async def metrics(self, job_id: str, flt: MetricFilter = EVERYTHING) -> list[MetricRow]:
        """Rows under `list_metrics` semantics, parsed exactly, in API order."""
        return [loads_exact(text) for text in await self.metrics_json(job_id, flt)]

    async def all_metrics(self, job_id: str) -> list[MetricRow]:
        """Every stored row of a job, in API order."""
        return await self.metrics(job_id)

    async def metrics_summary(self, job_id: str) -> MetricsSummary:
        """Last step, last and best train/eval loss."""
        return await self._read(readers.summary, job_id)

    async def claim_work(self) -> frozenset[str] | None:
        """None: one daemon owns a SQLite database (its lock), so every job is its own."""
        return None

    @property
    def next_claim_in(self) -> float | None:
        """None: nothing to claim on SQLite."""
        return None

    async def try_lease(self, name: str, seconds: float) -> bool:
        """True: the lock makes this daemon the only one, so every lease is its own."""
        return True

    async def live_daemons(self) -> list[tuple[str, str, int]]:
        """[]: a SQLite database has one daemon, known by its lock, not by heartbeats."""
        return []

    async def integrity_check(self) -> str:
        """`PRAGMA integrity_check`: "ok" for a sound database."""
        rows = await self._read(_pragma_rows, "integrity_check")
        return "\n".join(rows)


@dataclass(slots=True)
class _PendingPoll:
    """A page waiting for the group commit, and what became of it."""

    rec: PollRecord
    page: PageRows
    outcome: PollResult | Exception | None = None

    def args(self) -> tuple[PollRecord, PageRows]:
        """`writer.record_poll`'s arguments after the connection."""
        return self.rec, self.page


async def _record_all(conn: aiosqlite.Connection, batch: list[_PendingPoll]) -> list[PollResult]:
    """Every page of `batch` in the caller's transaction, in order."""
    return await writer.record_polls(conn, [p.args() for p in batch])


async def _finish_cancel(
    conn: aiosqlite.Connection,
    job_id: str,
    now: float,
    state: str,
    error: str | None,
    poll: PollRecord | None,
) -> PollResult | None:
    result = None
    if poll is not None:
        result = await writer.record_poll(
            conn, poll, page_rows(poll.job_id, poll.metrics, poll.records)
        )
    await alerting.finish_cancel(alerting.SqliteDb(conn), job_id, now, state, error)
    return result


async def _close(conn: aiosqlite.Connection, path: Path) -> None:
    """Close the connection; a failure (the disk full at the final checkpoint) is logged.

    Committed transactions are safe in the WAL whatever the close does.
    """
    try:
        await conn.close()
    except sqlite3.Error as exc:
        calls.log.warning("store.close_failed", path=str(path), error=str(exc))


def _pauses(found: dict[str, str]) -> dict[str, float]:
    """host -> epoch seconds from stored text; a value that is not a number is skipped."""
    pauses = {}
    for host, text in found.items():
        with contextlib.suppress(ValueError):
            pauses[host] = float(text)
    return pauses


async def _in_transaction(conn: aiosqlite.Connection, begin: str, op: Op[..., T], *args: Any) -> T:
    """`op(conn, *args)` between `begin` and COMMIT; rolled back whole on any failure."""
    await conn.execute(begin)
    try:
        result = await op(conn, *args)
        await conn.execute("COMMIT")
    except BaseException:
        await _rollback(conn)
        raise
    return result


async def _rollback(conn: aiosqlite.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (e.g. on SQLITE_FULL).

    Tried again if a stop's interrupt cut the ROLLBACK itself.
    """
    for _ in range(3):
        if not conn.in_transaction:
            return
        with contextlib.suppress(sqlite3.OperationalError):
            await conn.execute("ROLLBACK")


async def _delivery_context(
    conn: aiosqlite.Connection, delivery_id: str
) -> tuple[Delivery, dict[str, Any] | None, MetricsSummary]:
    found = await outbox.one(conn, delivery_id)
    if found is None:
        raise StoreError(f"no hook delivery {delivery_id!r}")
    job = await readers.job(conn, found.job_id)
    summary = await readers.summary(conn, found.job_id)
    return found, (job[1] if job else None), summary


async def _pragma_rows(conn: aiosqlite.Connection, name: str) -> list[str]:
    async with conn.execute(f"PRAGMA {name}") as cur:
        return [str(r[0]) for r in await cur.fetchall()]


def _name(op: Callable[..., object]) -> str:
    """What a call does, for the logs (`store.locked` names it)."""
    return str(getattr(op, "__name__", "call"))
