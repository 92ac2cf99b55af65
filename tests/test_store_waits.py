"""Store calls against another process's write lock, a stop, and a failing disk."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from bench.history import build
from watcherd.errors import StoreBusyError, StoreUnusableError
from watcherd.model import MetricRow
from watcherd.store import PollRecord, Store
from watcherd.store.calls import store_error

pytestmark = pytest.mark.anyio

T0 = 1_779_196_193_564_587_000


def rows(first: int, count: int) -> list[MetricRow]:
    """`count` train rows from step `first`, a second apart."""
    return [
        {"timestamp": T0 + s * 10**9, "train/global_step": s, "train/loss": 1.0 / s}
        for s in range(first, first + count)
    ]


def page(first: int, count: int) -> PollRecord:
    """A running poll of job ft-a carrying `count` rows."""
    return PollRecord("ft-a", 1.0, None, "running", rows(first, count))


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the event loop until `predicate()` holds (TimeoutError after 20 s)."""
    with anyio.fail_after(20.0):
        while not predicate():  # noqa: ASYNC110 - the store's state has no event to wait on
            await anyio.sleep(0.02)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """The daemon's store (it holds the lock) on a fresh file, watching ft-a."""
    async with Store.open(tmp_path / "w.db", writer=True) as st:
        await st.sync_watched([("ft-a", None)], 1.0)
        yield st


@pytest.fixture
def other(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A second, plain sqlite3 connection to the same file, as another process would hold."""
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
    yield conn
    conn.close()


async def test_a_write_waits_out_an_exclusive_lock_then_lands(
    store: Store, other: sqlite3.Connection
) -> None:
    """Refused by BEGIN EXCLUSIVE, a page waits (noted for `health`, logged), then is written."""
    await store.record_poll(page(1, 5))
    other.execute("BEGIN EXCLUSIVE")
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.record_poll, page(6, 5))
            await until(lambda: store.lock_wait_since is not None)
            assert Store.locked_since(store.path) == store.lock_wait_since
            assert [e["event"] for e in logs] == ["store.locked"]
            other.execute("COMMIT")
    assert store.lock_wait_since is None and Store.locked_since(store.path) is None
    assert [e["event"] for e in logs] == ["store.locked", "store.unlocked"]
    assert logs[0]["operation"] == "record_poll"
    assert [r["train/global_step"] for r in await store.all_metrics("ft-a")] == list(range(1, 11))


async def test_a_command_gives_up_after_its_patience(
    tmp_path: Path, store: Store, other: sqlite3.Connection
) -> None:
    """A CLI writer (no daemon lock) waits `patience` seconds, then StoreBusyError."""
    async with Store.open(store.path, writer=True, lock=False, patience=0.5) as cli:
        other.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            with pytest.raises(StoreBusyError, match=r"locked by another process \(gave up"):
                await cli.set_state("k", "v")
            assert time.monotonic() - started < 10
        finally:
            other.execute("COMMIT")
    assert await store.get_state("k") is None


async def test_a_stop_cuts_a_long_write_short_and_rolls_it_back(tmp_path: Path) -> None:
    """Once stopping, a write running past the grace (renumbering 50,000 rows) is cut, whole."""
    db = tmp_path / "big.db"
    (job,) = build(db, 1, 50_000)
    first = {"timestamp": 0, "train/global_step": 0, "train/loss": 1.0}
    early = PollRecord(job, 1.0, None, "running", [first])
    async with Store.open(db, writer=True) as store, anyio.create_task_group() as watch:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.record_poll, early)  # sorts first: every row is renumbered
            await until(lambda: (store.busy_for or 0.0) > 0.2)
            started = time.monotonic()
            watch.start_soon(store.cut_long_calls, 0.1)
            tg.cancel_scope.cancel()
        cut_after = time.monotonic() - started
        watch.cancel_scope.cancel()
    assert cut_after < 1.0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), min(step) FROM metrics").fetchone() == (50_500, 1)
    conn.close()


async def test_a_stop_ends_a_wait_for_another_process_lock(
    store: Store, other: sqlite3.Connection
) -> None:
    """A write waiting for another process's lock ends within one attempt of the stop."""
    other.execute("BEGIN EXCLUSIVE")
    try:
        async with anyio.create_task_group() as watch:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.record_poll, page(1, 5))
                await until(lambda: store.lock_wait_since is not None)
                started = time.monotonic()
                watch.start_soon(store.cut_long_calls, 0.1)
                tg.cancel_scope.cancel()
            ended_after = time.monotonic() - started
            watch.cancel_scope.cancel()
    finally:
        other.execute("COMMIT")
    assert ended_after < 2.5  # one busy attempt (1 s) at most
    assert other.execute("SELECT count(*) FROM metrics").fetchone() == (0,)


def test_a_full_database_is_an_unusable_store(tmp_path: Path) -> None:
    """SQLITE_FULL (a real one, from max_page_count) becomes StoreUnusableError."""
    conn = sqlite3.connect(tmp_path / "f.db")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    conn.close()
    error = store_error(caught.value, tmp_path / "f.db")
    assert isinstance(error, StoreUnusableError)
    assert error.reason == "database or disk is full (SQLITE_FULL)"


async def test_deleted_database_files_are_noticed(store: Store, tmp_path: Path) -> None:
    """Deleting the database (or its -wal) while open makes check_files raise."""
    store.check_files()
    (tmp_path / "w.db-wal").unlink()
    with pytest.raises(StoreUnusableError, match="deleted or replaced"):
        store.check_files()
