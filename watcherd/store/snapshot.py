"""The database read with plain `sqlite3`: what the read commands need, started fast.

`watcherd list`, `show`, `metrics`, `hooks`, `report` and `health` only read, so on
SQLite they need neither the event loop nor aiosqlite's thread (importing asyncio,
anyio and aiosqlite costs more than the queries). A `Snapshot` is a `StoreReader` that
runs the very same query functions the daemon's `Store` runs (`readers`, `outbox`):
they are coroutines that only await the connection, and here the connection answers
at once, so a command's read (itself a coroutine over a `StoreReader`) is driven to
its end by a single `send` and never suspends. `read_store` picks that path for a
SQLite file and the async `StoreApi` for a `postgresql://` store, so a command's read
is written once for both backends.

Every read of one `Snapshot` sees one state of the database (one read transaction).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from watcherd.errors import StoreError
from watcherd.model import (
    Alert,
    Delivery,
    JobOverview,
    MetricFilter,
    MetricRow,
    Transition,
    loads_exact,
)
from watcherd.store import alerting, connection, outbox, readers
from watcherd.store.schema import check_version, user_version

if TYPE_CHECKING:
    import aiosqlite

    from watcherd.config.reading import StoreConfig
    from watcherd.spend import SpendRow
    from watcherd.store.interface import StoreReader
    from watcherd.store.records import JobState

T = TypeVar("T")
EVERYTHING: Final = MetricFilter()
#: A read waits this long for a lock (WAL readers seldom meet one: a checkpoint's end).
READ_BUSY_TIMEOUT_MS: Final = 10_000


class Snapshot:
    """A read-only view of watcherd's database. Open with `Snapshot.open(path)`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._async = cast("aiosqlite.Connection", _Connection(conn))
        self.path = path

    @classmethod
    @contextmanager
    def open(cls, path: Path) -> Iterator[Snapshot]:
        """Open `path` read-only; StoreError if it is missing or of another schema version."""
        path = Path(path)
        name, uri = connection.target(path, writer=False)
        try:
            conn = sqlite3.connect(name, uri=uri, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        try:
            snapshot = cls(conn, path)
            snapshot._begin()
            yield snapshot
        finally:
            conn.close()

    def _begin(self) -> None:
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
            check_version(_run(user_version(self._async)), str(self.path), writer=False)
            self._conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @staticmethod
    def daemon_running(path: Path) -> bool:
        """True if a daemon holds the lock on `path`."""
        return connection.lock_held(path)

    @staticmethod
    def locked_since(path: Path) -> float | None:
        """Since when the daemon of `path` waits for another process's write lock, if it does."""
        return connection.locked_since(path)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Drive `coro`, which reads through this snapshot, to its end (it never waits)."""
        try:
            return _run(coro)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    async def overview(self, *, include_unwatched: bool = False) -> list[JobOverview]:
        """One row per job for `watcherd list`."""
        return await readers.overview(self._async, include_unwatched=include_unwatched)

    async def job(self, job_id: str) -> tuple[JobOverview, dict[str, Any] | None] | None:
        """One job's overview and last job object, or None if never seen."""
        return await readers.job(self._async, job_id)

    async def transitions(self, job_id: str) -> list[Transition]:
        """A job's status changes, oldest first."""
        return await readers.transitions(self._async, job_id)

    async def metrics_json(self, job_id: str, flt: MetricFilter = EVERYTHING) -> list[str]:
        """Stored JSON texts under `list_metrics` semantics, in API order."""
        return await readers.metrics_json(self._async, job_id, flt)

    async def metrics(self, job_id: str, flt: MetricFilter = EVERYTHING) -> list[MetricRow]:
        """Rows under `list_metrics` semantics, parsed exactly, in API order."""
        return [loads_exact(text) for text in await self.metrics_json(job_id, flt)]

    async def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        """Every delivery, or one job's, in creation order."""
        return await outbox.listing(self._async, job_id)

    async def get_state(self, key: str) -> str | None:
        """One daemon-state value, or None."""
        return await readers.get_state(self._async, key)

    async def job_states(self, only: Iterable[str] | None = None) -> dict[str, JobState]:
        """Scheduling state of the watched jobs, or of the stored jobs among `only`."""
        return await readers.job_states(self._async, None if only is None else frozenset(only))

    async def alerts(self, job_id: str | None = None, *, open_only: bool = False) -> list[Alert]:
        """Alert episodes, oldest first (one job's, or every job's); only open ones if asked."""
        return await alerting.alerts(alerting.SqliteDb(self._async), job_id, open_only=open_only)

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored API events, in the order first seen."""
        return await readers.events(self._async, job_id)

    async def spend(self) -> list[SpendRow]:
        """Every priced job's spend (see `watcherd.spend`), in the order added."""
        return await readers.spend(self._async)

    async def last_successful_poll(self) -> float | None:
        """When a poll was last recorded successfully."""
        from watcherd.store.writer import LAST_POLL_KEY  # health only: the writer is big

        value = await self.get_state(LAST_POLL_KEY)
        return None if value is None else float(value)


def read_store(config: StoreConfig, read: Callable[[StoreReader], Coroutine[Any, Any, T]]) -> T:
    """`read` run over the configured store, opened for reading, and its result.

    A SQLite file is read through a `Snapshot`, without an event loop; only a
    `postgresql://` store imports anyio and the async stack (psycopg), on this path.
    """
    if config.url is None:
        with Snapshot.open(config.path) as snapshot:
            return snapshot.run(read(snapshot))
    import anyio

    from watcherd.store.opening import open_configured

    async def shared() -> T:
        async with open_configured(config, writer=False) as store:
            return await read(store)

    return anyio.run(shared, backend="asyncio")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a reader coroutine that never suspends (its connection answers at once)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise StoreError("a store query waited for I/O that a snapshot cannot wait for")


class _Connection:
    """The part of `aiosqlite.Connection` the readers use, answered synchronously."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        return _Result(self._conn.execute(sql, params))

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()


class _Result:
    """`conn.execute(...)`: awaited, or used with `async with`, it gives the cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = _Cursor(cursor)

    def __await__(self) -> Any:
        return self._ready().__await__()

    async def _ready(self) -> _Cursor:
        return self._cursor

    async def __aenter__(self) -> _Cursor:
        return self._cursor

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._cursor.close()


class _Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()
