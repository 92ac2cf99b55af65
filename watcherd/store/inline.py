"""A whole transaction in one trip to aiosqlite's database thread.

aiosqlite runs each statement on its connection's thread: every `await conn.execute`
is a hand-off there and back (a queue put, a thread wake-up, a self-pipe write, the
event loop's wake-up, the GIL passed twice). A group commit of polls took six of them
(BEGIN, the stored rows, the inserts, the job updates, the poll time, COMMIT).

`run_inline` sends one function to that thread instead: it runs the transaction's
coroutine there to its end, against `Inline`, which offers the part of aiosqlite's
connection API the store's operations use (`execute`, `executemany`,
`execute_fetchall`, cursors, `in_transaction`) and runs each call at once on the
sqlite3 connection. The operations stay as they are (coroutines taking "a
connection"); none of them awaits anything but the database, and if one ever did,
`drive` refuses it (`InlineError`) rather than block the thread.

The two threads still meet at the GIL: the database thread needs it back after each
SQLite call, and Python's default switch interval (5 ms) then makes the event loop's
thread hand it over mid-stretch, a few context switches on both threads each time. The
loop gives the GIL up at every socket call and every wait anyway, so the daemon sets a
longer interval (`SWITCH_INTERVAL`, by `settle_switch_interval`): a wait for the GIL
then ends at the loop's next socket call instead of with a forced hand-over.

aiosqlite offers no public way to run a function on its thread; this uses
`Connection._execute` (queue a callable on the thread, await its result) and
`Connection._conn` (the sqlite3 connection), both unchanged since aiosqlite 0.17
(pyproject pins the tested range; tests/test_store_inline.py checks the path).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

if TYPE_CHECKING:
    import aiosqlite

T = TypeVar("T")

#: Seconds a thread may hold the GIL while another waits for it, in the daemon (Python's
#: default is 0.005). At 10,000 jobs a poll cost 2.49-2.54 ms of CPU with the default,
#: 2.22-2.31 ms with this (README, Benchmarks).
SWITCH_INTERVAL: Final = 0.05


def settle_switch_interval() -> None:
    """Set the process's GIL switch interval to `SWITCH_INTERVAL` (see the module docstring)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


class InlineError(RuntimeError):
    """A store operation awaited something other than the database: a bug."""


class _Ready:
    """An awaitable that is already done (no suspension): `await` gives `value`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # pragma: no cover - makes this a generator that never suspends

    async def __aenter__(self) -> Any:
        return self.value

    async def __aexit__(self, *exc: object) -> None:
        close = getattr(self.value, "close", None)
        if close is not None:
            await close()


class InlineCursor:
    """aiosqlite's cursor API over a sqlite3 cursor, each call at once."""

    __slots__ = ("_cur",)

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        """Rows the last statement changed."""
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        """The row id of the last inserted row."""
        return self._cur.lastrowid

    async def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return self._cur.fetchall()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to `size` rows."""
        return self._cur.fetchmany(size) if size is not None else self._cur.fetchmany()

    async def close(self) -> None:
        """Close the cursor."""
        self._cur.close()

    def __aiter__(self) -> InlineCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._cur.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row


class Inline:
    """aiosqlite's connection API on the database thread itself: see the module docstring."""

    __slots__ = ("_raw",)

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open."""
        return self._raw.in_transaction

    def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> _Ready:
        """Run one statement; awaited (or `async with`) it gives its cursor."""
        cur = self._raw.execute(sql, () if parameters is None else parameters)  # type: ignore[arg-type]
        return _Ready(InlineCursor(cur))

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> _Ready:
        """Run one statement for each parameter set."""
        return _Ready(InlineCursor(self._raw.executemany(sql, parameters)))  # type: ignore[arg-type]

    def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> _Ready:
        """Every row of one statement."""
        cur = self._raw.execute(sql, () if parameters is None else parameters)  # type: ignore[arg-type]
        rows = cur.fetchall()
        return _Ready(rows)


def drive(make: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run the coroutine `make(*args)` to its end now; InlineError if it suspends."""
    coro = make(*args)
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise InlineError(f"{getattr(make, '__name__', make)!r} awaited something not the database")


async def run_inline(
    conn: aiosqlite.Connection,
    op: Callable[..., Coroutine[Any, Any, T]],
    *args: Any,
) -> T:
    """`op(Inline(...), *args)` on `conn`'s database thread, in one trip there and back."""
    raw = conn._conn  # private: see the module docstring
    on_thread = cast("Callable[..., Awaitable[T]]", conn._execute)
    return await on_thread(drive, op, Inline(raw), *args)
