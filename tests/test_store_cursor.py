"""The stored settled cursor: the README's definition, kept per page, read for free."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.history import T0, build
from tests.test_store_metrics import truth
from watcherd.model import SETTLE_NS, MetricRow
from watcherd.store import PollRecord, Store, readers, writer
from watcherd.store.cursor import SETTLED
from watcherd.store.rows import metric_rows

#: The cursor as watcherd computed it before it was stored: the reference semantics.
REFERENCE_SQL = (
    "SELECT job_id, (SELECT min(m.step) FROM metrics m WHERE m.job_id = jobs.job_id"
    " AND m.timestamp > (SELECT max(t.timestamp) FROM metrics t"
    " WHERE t.job_id = jobs.job_id) - ?) FROM jobs ORDER BY job_id"
)
HALF_SECOND = 500_000_000


def reference(db: Path) -> dict[str, int | None]:
    """Every job's cursor by the reference query (quadratic: small databases only)."""
    with sqlite3.connect(db) as conn:
        found = dict(conn.execute(REFERENCE_SQL, (SETTLE_NS,)).fetchall())
    conn.close()
    return found


def defined(rows: Sequence[MetricRow]) -> int | None:
    """README: the lowest step logged within 5 s of the newest row (None without rows)."""
    if not rows:
        return None
    newest = max(r["timestamp"] for r in rows)
    return int(min(r["train/global_step"] for r in rows if r["timestamp"] > newest - SETTLE_NS))


async def _record(db: Path, pages: Sequence[Sequence[MetricRow]]) -> dict[str, int | None]:
    async with Store.open(db, writer=True) as store:
        await store.sync_watched([("ft-a", None)], 1.0)
        for at, page in enumerate(pages):
            await store.record_poll(PollRecord("ft-a", float(at), None, "running", page))
        return {j: s.cursor_step for j, s in (await store.job_states()).items()}


spec = st.tuples(
    st.sampled_from(["train", "train", "eval"]), st.integers(0, 60), st.integers(0, 60)
)


@st.composite
def paged_rows(draw: st.DrawFn) -> list[list[MetricRow]]:
    """Rows half a second apart or anywhere, out of order at times, in a few pages."""
    specs = draw(st.lists(spec, max_size=50))
    rows = [
        {"timestamp": T0 + t * HALF_SECOND, "train/global_step": s, f"{k}/loss": 1.0}
        for k, s, t in specs
    ]
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), min_size=1, max_size=4)))
    return [rows[a:b] for a, b in itertools.pairwise([0, *cuts, len(rows)])]


@settings(max_examples=120, deadline=None)
@given(pages=paged_rows())
def test_stored_cursor_follows_the_definition_page_by_page(pages: list[list[MetricRow]]) -> None:
    """After any pages, the stored cursor is the README's and the old query's cursor."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "w.db"
        got = anyio.run(_record, db, pages, backend="asyncio")
        assert got == {"ft-a": defined(truth(pages))}
        assert reference(db) == got


def test_the_migration_fills_the_cursor_of_an_existing_database(tmp_path: Path) -> None:
    """A database from before the stored cursor gets every job's cursor on first open."""
    db = tmp_path / "w.db"
    build(db, 3, 2_000, version=1)
    with sqlite3.connect(db) as conn:  # a late eval row and a job of eval rows only
        conn.execute(
            "INSERT INTO metrics (job_id, kind, step, timestamp, row_json) VALUES"
            " ('ft-history-0001', 'eval', 1990, ?, '{}'), ('ft-eval-only', 'eval', 7, 5, '{}')",
            (T0 + 2_000 * 10**9 + 1,),
        )
        conn.execute("INSERT INTO jobs (job_id, added_at) VALUES ('ft-eval-only', 0)")
    conn.close()
    expected = reference(db)
    assert expected["ft-history-0001"] == 1990 and expected["ft-eval-only"] == 7

    async def states() -> dict[str, int | None]:
        async with Store.open(db, writer=True) as store:
            found = await store.job_states(only=expected)
        return {job_id: state.cursor_step for job_id, state in found.items()}

    assert anyio.run(states, backend="asyncio") == expected


def test_the_cursor_is_an_index_range_over_the_last_seconds(tmp_path: Path) -> None:
    """The cursor reads two index probes and a timestamp range, never the job's history."""
    db = tmp_path / "w.db"
    build(db, 1, 10)
    with sqlite3.connect(db) as conn:
        plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT {SETTLED} FROM jobs")]
    conn.close()
    searches = [p for p in plan if "metrics" in p or " m " in p]
    assert (
        "SEARCH m USING COVERING INDEX metrics_order (job_id=? AND kind=? AND timestamp>?)" in plan
    )
    assert len(searches) == 3 and all(p.startswith("SEARCH") for p in searches), plan


#: A query that runs this many VM instructions (x 100) is not per-poll cheap: stop it.
VM_CAP = 20_000


async def _vm_cost(db: Path, call: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> int:
    """SQLite VM instructions (in hundreds) `call` runs on a fresh connection to `db`."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 1 if count > VM_CAP else 0  # non-zero interrupts the statement

    async with aiosqlite.connect(db, isolation_level=None) as conn:
        await conn.set_progress_handler(tick, 100)
        await call(conn)
    return count


async def _job_states(conn: aiosqlite.Connection) -> None:
    assert len(await readers.job_states(conn)) == 5


async def _page(conn: aiosqlite.Connection) -> None:
    """One poll's page of 3 new steps, recorded and rolled back."""
    rows = [
        {"timestamp": T0 + step * 10**9, "train/global_step": step, "train/loss": 0.5}
        for step in range(10**7, 10**7 + 3)
    ]
    rec = PollRecord("ft-history-0002", 1.0, None, "running", rows)
    await conn.execute("BEGIN IMMEDIATE")
    result = await writer.record_poll(conn, rec, metric_rows(rec.job_id, rows))
    await conn.execute("ROLLBACK")
    assert result.new_rows == 3


@pytest.mark.parametrize("call", [_job_states, _page], ids=["job_states", "record_poll"])
def test_per_poll_database_work_does_not_grow_with_history(
    tmp_path: Path, call: Callable[[aiosqlite.Connection], Awaitable[None]]
) -> None:
    """Reading the jobs' state and recording a page cost the same at 500 and 50,000 steps."""
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    build(small, 5, 100)
    build(large, 5, 10_000)
    costs = []
    for db in (small, large):
        shutil.copy(db, tmp_path / "copy.db")  # a fresh file each time: same cache state
        costs.append(anyio.run(_vm_cost, tmp_path / "copy.db", call, backend="asyncio"))
        (tmp_path / "copy.db").unlink()
    assert costs[1] <= costs[0] + 2, costs
