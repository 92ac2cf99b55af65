"""PgStore: the Store's interface on a shared PostgreSQL database.

One connection per store, every operation in its own transaction (one per fetched
page), serialized by a lock and shielded from cancellation like the SQLite store.
A broken connection is dropped and opened again on the next call, so while the
database is unreachable each call raises StoreError (the poller retries) instead of
crashing the daemon.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import anyio
import psycopg
import structlog

from watcherd.config.secrets import redact_url
from watcherd.errors import StoreError
from watcherd.model import (
    Delivery,
    JobOverview,
    MetricFilter,
    MetricRow,
    MetricsSummary,
    PayloadFacts,
    Transition,
    loads_exact,
)
from watcherd.spend import Period, SpendRow
from watcherd.store.postgres import copy, eventlog, leases, outbox, readers, schema, writer
from watcherd.store.postgres.alertstore import AlertMethods
from watcherd.store.postgres.sql import Conn, nul_free
from watcherd.store.records import HookLike, JobState, PollRecord, PollResult
from watcherd.store.rows import page_rows
from watcherd.store.writer import LAST_POLL_KEY

P = ParamSpec("P")
T = TypeVar("T")
Op = Callable[Concatenate[Conn, P], Awaitable[T]]

log = structlog.get_logger("watcherd.store")
HOST_PAUSE_PREFIX: Final = "host_pause:"
CONNECT_TIMEOUT: Final = 10
EVERYTHING: Final = MetricFilter()
DEFAULT_LEASE: Final = 30.0


async def connect(url: str, password: str | None) -> Conn:
    """An autocommit connection (transactions are explicit); StoreError if unreachable."""
    extra: dict[str, Any] = {} if password is None else {"password": password}
    try:
        return nul_free(
            await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **extra
            )
        )
    except psycopg.Error as exc:
        raise StoreError(f"{redact_url(url)}: cannot connect: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Channel:
    """One connection, opened on first use and again after it broke; one op at a time."""

    def __init__(self, url: str, password: str | None, conn: Conn | None) -> None:
        self._url = url
        self._password = password
        self._conn = conn
        self._lock = anyio.Lock()
        self.busy_since: float | None = None  # monotonic start of the call under way

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def cancel(self) -> None:
        """Cancel the statement under way on the server (its transaction rolls back)."""
        conn = self._conn
        if conn is not None and not conn.closed:
            await conn.cancel_safe()

    async def run(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`op` in one transaction, shielded; psycopg errors become StoreError."""
        return await self._run(True, op, *args, **kwargs)

    async def statement(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`op`, a single statement (atomic alone), without BEGIN and COMMIT: one round
        trip instead of three."""
        return await self._run(False, op, *args, **kwargs)

    async def _run(self, tx: bool, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = await connect(self._url, self._password)
                conn = self._conn
                self.busy_since = time.monotonic()
                try:
                    if not tx:
                        return await op(conn, *args, **kwargs)
                    async with conn.transaction():
                        result = await op(conn, *args, **kwargs)
                except psycopg.Error as exc:
                    where = redact_url(self._url)
                    if conn.broken or conn.closed:
                        self._conn = None
                        log.warning("store.unreachable", database=where, error=str(exc))
                    raise StoreError(f"{where}: {_first_line(exc)}") from exc
                finally:
                    self.busy_since = None
        return result


class PgStore(AlertMethods):
    """watcherd's history in PostgreSQL. Open with `PgStore.open(url, writer=...)`."""

    backend: Final = "postgresql"

    def __init__(
        self, conn: Conn, url: str, password: str | None, *, writer: bool, lease: float
    ) -> None:
        self.url = url
        self.where = redact_url(url)
        self.writer = writer
        self._main = _Channel(url, password, conn)
        self._control = _Channel(url, password, None)
        self._pause = _Channel(url, password, None)
        self.member = leases.Member(uuid.uuid4().hex[:16], socket.gethostname(), os.getpid(), lease)
        self._tokens: dict[str, int] | None = None  # held job leases, once claim_work ran
        self._next_claim_in: float | None = None
        self._attempts: dict[str, int] = {}  # delivery id -> the attempt started here

    @classmethod
    @asynccontextmanager
    async def open(
        cls, url: str, *, writer: bool, password: str | None = None, lease: float = DEFAULT_LEASE
    ) -> AsyncIterator[PgStore]:
        """Connect; a writer migrates, a reader refuses a missing or older schema."""
        with anyio.CancelScope(shield=True):
            conn = await connect(url, password)
            try:
                await _prepare(conn, redact_url(url), writer=writer)
            except BaseException:
                await conn.close()
                raise
        store = cls(conn, url, password, writer=writer, lease=lease)
        try:
            yield store
        finally:
            with anyio.CancelScope(shield=True):
                await store.close()

    async def close(self) -> None:
        """Give back this daemon's leases (a clean stop hands over at once), disconnect."""
        if self._tokens is not None:
            with contextlib.suppress(StoreError):
                await self._ctl(leases.release_all, self.member.instance)
            self._tokens = None
        for channel in (self._main, self._control, self._pause):
            await channel.close()

    @property
    def busy_for(self) -> float | None:
        """Seconds the current database call has run; None when none runs."""
        since = self._main.busy_since
        return None if since is None else time.monotonic() - since

    @property
    def lock_wait_since(self) -> float | None:
        """None: PostgreSQL waits no file lock (row locks are brief, per job)."""
        return None

    def check_files(self) -> None:
        """Nothing to check: the database is a server, not files of this host."""

    async def cut_long_calls(self, grace: float) -> None:
        """The daemon is stopping: cancel any statement that has run longer than `grace`.

        Runs until cancelled; a cancelled statement's transaction rolls back whole.
        """
        while True:
            for channel in (self._main, self._control, self._pause):
                since = channel.busy_since
                if since is not None and time.monotonic() - since > grace:
                    await channel.cancel()
            await anyio.sleep(min(grace / 4, 0.1))

    async def _write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` in its own transaction, shielded from cancellation."""
        if not self.writer:
            raise StoreError(f"{self.where}: opened read-only")
        return await self._main.run(op, *args, **kwargs)

    async def _read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` in one transaction (one snapshot of reads, all writes or none)."""
        return await self._main.run(op, *args, **kwargs)

    async def _ctl(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `op` on the control connection: leases and the shared pause never queue
        behind a burst of page writes."""
        if not self.writer:
            raise StoreError(f"{self.where}: opened read-only")
        return await self._control.run(op, *args, **kwargs)

    # -- the watched set ---------------------------------------------------

    async def sync_watched(
        self, entries: Sequence[tuple[str, str | None]], now: float, *, source: str | None = None
    ) -> None:
        """Without `source`: watch exactly these (job_id, note) pairs, the others become
        unwatched. With it (a host's jobs file and inline IDs): apply what changed in
        that source since it last synced, leaving jobs from elsewhere alone (`watchlist`).
        """
        if source is None:
            await self._write(writer.sync_watched, entries, now)
            return
        changes = await self._write(writer.sync_source, source, entries, now)
        if changes.watch or changes.unwatch:
            log.info(
                "jobs.shared_list_changed",
                source=source,
                watched=[j for j, _ in changes.watch],
                unwatched=changes.unwatch,
            )

    async def change_watched(
        self, add: Sequence[tuple[str, str | None]], remove: Sequence[str], now: float
    ) -> None:
        """Watch `add` and unwatch `remove` (`watcherd add` / `remove`); others unchanged."""
        await self._write(writer.change_watched, add, remove, now)

    async def ensure_jobs(self, job_ids: Sequence[str], now: float | None = None) -> None:
        """Create unwatched rows for jobs never seen (for `wait` without a daemon)."""
        await self._write(writer.ensure_jobs, job_ids, time.time() if now is None else now)

    async def job_states(self, only: Iterable[str] | None = None) -> dict[str, JobState]:
        """Scheduling state of the watched jobs, or of the stored jobs among `only`."""
        return await self._read(readers.job_states, None if only is None else frozenset(only))

    # -- polls -----------------------------------------------------------------

    async def record_poll(self, rec: PollRecord) -> PollResult:
        """Rows, job fields, transition and outbox rows of one page, in one transaction.

        Once this store claims work (`claim_work`), the write is fenced: LeaseLostError
        if the job's lease passed to another daemon.
        """
        page = page_rows(rec.job_id, rec.metrics, rec.records)
        fence = self._fence(rec.job_id)
        return await self._write(leases.fenced, fence, rec.job_id, writer.record_poll, rec, page)

    async def record_failure(
        self, job_id: str, observed_at: float, error: str, *, not_found: bool
    ) -> int:
        """Note a failed poll; returns the count of 404s in a row."""
        fence = self._fence(job_id)
        op = functools.partial(writer.record_failure, not_found=not_found)
        return await self._write(leases.fenced, fence, job_id, op, job_id, observed_at, error)

    async def mark_missing(
        self, job_id: str, observed_at: float, hooks: Sequence[HookLike]
    ) -> PollResult:
        """Transition the job to `missing` and queue the hooks that subscribe to it."""
        fence = self._fence(job_id)
        return await self._write(
            leases.fenced, fence, job_id, writer.mark_missing, job_id, observed_at, hooks
        )

    def _fence(self, job_id: str) -> tuple[str, int | None] | None:
        """(holder, token) to check before writing `job_id`; None outside a cluster."""
        if self._tokens is None:
            return None
        return self.member.instance, self._tokens.get(job_id)

    # -- sharing the work ------------------------------------------------------

    async def claim_work(self) -> frozenset[str] | None:
        """Heartbeat, renew and claim job leases (see `leases`); the jobs this daemon polls."""
        claimed = await self._ctl(leases.claim, self.member)
        self._tokens = claimed.held
        self._next_claim_in = claimed.again_in
        return frozenset(claimed.held)

    @property
    def next_claim_in(self) -> float | None:
        """Seconds until `claim_work` is due again: a renewal, or another daemon's lease
        running out (it may have died); None before the first claim."""
        return self._next_claim_in

    async def try_lease(self, name: str, seconds: float) -> bool:
        """Take the named lease (e.g. the round's list request) unless another daemon has it."""
        return await self._ctl(leases.try_lease, name, self.member.instance, seconds)

    async def live_daemons(self) -> list[tuple[str, str, int]]:
        """(instance, host, pid) of every daemon whose heartbeat is current (a daemon asks
        on its control connection: never queued behind page writes)."""
        channel = self._control if self.writer else self._main
        return await channel.run(leases.live_daemons)

    async def record_events(self, job_id: str, events: Sequence[dict[str, Any]], now: float) -> int:
        """Store API events not seen before (`eventlog.event_keys`); return how many.

        Fenced like a poll once this store claims work.
        """
        fence = self._fence(job_id)
        op = eventlog.record_events
        return await self._write(leases.fenced, fence, job_id, op, job_id, events, now)

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored API events, in the order first seen."""
        return await self._read(readers.events, job_id)

    # -- daemon state --------------------------------------------------------

    async def set_state(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) one daemon-state value."""
        await self._write(writer.set_state, key, value)

    async def get_state(self, key: str) -> str | None:
        """One daemon-state value, or None."""
        return await self._read(readers.get_state, key)

    async def set_host_pause(self, host: str, until: float | None) -> None:
        """Pause every request to `host` until `until` (epoch seconds); None lifts it.

        Shared by every daemon, so never shortened: a later pause another daemon stored
        stays (`clear_host_pauses`, i.e. `watcherd resume`, lifts it; each daemon cuts
        what it reads to its own `api.max_retry_after`). On a connection of its own,
        never queued behind page writes or claims.
        """
        if not self.writer:
            raise StoreError(f"{self.where}: opened read-only")
        key = HOST_PAUSE_PREFIX + host
        if until is None:
            await self._pause.run(writer.set_state, key, None)
        else:
            await self._pause.statement(writer.raise_state_number, key, until)

    async def host_pauses(self) -> dict[str, float]:
        """Every stored host pause (expired ones included: compare with the clock).

        One statement on the pause connection: cheap enough to run before each request.
        """
        channel = self._pause if self.writer else self._main
        return _pauses(await channel.statement(readers.state_prefixed, HOST_PAUSE_PREFIX))

    async def clear_host_pauses(self) -> dict[str, float]:
        """Lift every stored host pause (`watcherd resume`); returns the ones lifted."""
        return _pauses(await self._ctl(writer.delete_state_prefixed, HOST_PAUSE_PREFIX))

    async def last_successful_poll(self) -> float | None:
        """When a poll was last recorded successfully."""
        value = await self.get_state(LAST_POLL_KEY)
        return None if value is None else float(value)

    # -- the outbox ----------------------------------------------------------

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending or failed deliveries due at `now`, oldest first.

        A daemon sharing the work (once it claimed some) first turns running deliveries
        whose holder's lease ran out (a daemon that died) into failed, due now: another
        daemon picks them up within a lease period.
        """
        if self.writer and self._tokens is not None:
            recovered = await self._write(leases.recover_expired, now)
            if recovered:
                log.warning("hook.recovered", deliveries=recovered, reason="lease expired")
        return await self._read(outbox.due, now, limit)

    async def start_attempt(self, delivery_id: str, now: float) -> int:
        """Take the delivery for this daemon (a lease), count the attempt; its number.

        LeaseLostError if another daemon took it first.
        """
        attempt = await self._write(
            outbox.start_attempt, delivery_id, now, self.member.instance, self.member.hold
        )
        self._attempts[delivery_id] = attempt
        return attempt

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
        """Record an attempt's outcome: delivered, failed (retry at next_attempt_at), dead.

        Fenced: LeaseLostError if the attempt started here was taken over meanwhile.
        """
        attempt = self._attempts.pop(delivery_id, None)
        await self._write(
            outbox.finish_attempt,
            delivery_id,
            now,
            fence=None if attempt is None else (self.member.instance, attempt),
            outcome=outcome,
            error=error,
            output_tail=output_tail,
            next_attempt_at=next_attempt_at,
        )

    async def recover_interrupted(self, now: float) -> list[str]:
        """Running deliveries whose lease ran out become failed, due now; their ids.

        On a shared database a running delivery may be another live daemon's: only
        those whose holder stopped renewing are taken back.
        """
        return await self._write(leases.recover_expired, now)

    async def requeue(self, delivery_id: str, now: float) -> bool:
        """Same id back to pending, due now, attempts reset; False if unknown or running."""
        return await self._write(outbox.requeue, delivery_id, now)

    async def next_delivery_due(self) -> float | None:
        """When the next pending or failed delivery falls due."""
        return await self._read(outbox.next_due)

    async def delivery_context(
        self, delivery_id: str
    ) -> tuple[Delivery, dict[str, Any] | None, MetricsSummary]:
        """A delivery, its job's last job object and metrics summary: the payload's parts."""
        return await self._read(_delivery_context, delivery_id)

    async def spend(self) -> list[SpendRow]:
        """Every priced job's spend (see `watcherd.spend`)."""
        return await self._read(eventlog.spend)

    async def fire_budget(
        self, limits: Sequence[tuple[Period, int]], hooks: Sequence[HookLike], now: float
    ) -> list[str]:
        """Queue `budget.exceeded` deliveries for the periods over their limit (once each,
        whichever daemon checks)."""
        return await self._write(eventlog.fire_budget, limits, hooks, now)

    async def payload_facts(self, job_id: str) -> PayloadFacts:
        """What a hook payload tells about a job beyond its object (one snapshot)."""
        return await self._read(eventlog.payload_facts, job_id)

    async def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        """Every delivery, or one job's, in creation order."""
        return await self._read(outbox.listing, job_id)

    async def delivery_counts(self) -> dict[str, int]:
        """Deliveries per state (`pending`, `dead`, ...), one cheap query."""
        return await self._read(readers.delivery_counts)

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

    async def copy_from_sqlite(self, path: Path) -> dict[str, tuple[int, int]]:
        """Copy a SQLite history in (resumable, see `copy`); per table: (read, now here)."""
        source = copy.open_source(path)
        found: dict[str, tuple[int, int]] = {}
        try:
            for table in copy.TABLES:
                read = 0
                for rows in copy.batches(source, table):
                    await self._write(copy.copy_batch, table, rows)
                    read += len(rows)
                await self._write(copy.reset_identity, table)
                found[table.name] = (read, await self._read(copy.count, table))
                log.info("migrate.table", table=table.name, rows=read)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from exc
        finally:
            source.close()
        return found

    async def integrity_check(self) -> str:
        """ "ok" when the database answers and holds this watcherd's schema version."""
        found = await self._read(schema.version)
        return "ok" if found == schema.SCHEMA_VERSION else f"schema version {found}"


async def _prepare(conn: Conn, where: str, *, writer: bool) -> None:
    """Migrate (writer) or check the schema version (reader)."""
    try:
        if writer:
            await schema.migrate(conn, where)
        else:
            schema.check_version(await schema.version(conn), where, writer=False)
    except psycopg.Error as exc:
        raise StoreError(f"{where}: {_first_line(exc)}") from exc


def _pauses(found: dict[str, str]) -> dict[str, float]:
    """host -> epoch seconds from stored text; a value that is not a number is skipped."""
    pauses = {}
    for host, text in found.items():
        with contextlib.suppress(ValueError):
            pauses[host] = float(text)
    return pauses


async def _delivery_context(
    conn: Conn, delivery_id: str
) -> tuple[Delivery, dict[str, Any] | None, MetricsSummary]:
    found = await outbox.one_delivery(conn, delivery_id)
    if found is None:
        raise StoreError(f"no hook delivery {delivery_id!r}")
    job = await readers.job(conn, found.job_id)
    summary = await readers.summary(conn, found.job_id)
    return found, (job[1] if job else None), summary
