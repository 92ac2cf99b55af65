"""Event logs and the budget with several daemons on one PostgreSQL store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from tests.storeharness import query
from watcherd.config import CommandHook, Config, HookConfig
from watcherd.config.schema import BudgetConfig
from watcherd.errors import LeaseLostError
from watcherd.spend import NANO, period
from watcherd.store import HookSub, PollRecord, PollResult
from watcherd.store.postgres.core import PgStore
from watcherd.watch.budget import BudgetWatch

pytestmark = pytest.mark.anyio

JOBS = [f"ft-{i:02d}" for i in range(4)]
T = datetime(2026, 5, 19, 12, tzinfo=UTC).timestamp()
PAGER = (HookSub("pager", ("budget.exceeded",)),)


def _log(count: int) -> list[dict[str, Any]]:
    """The first `count` events of a job's log (whole, as every fetch returns it)."""
    return [
        {"created_at": f"2026-05-19T13:00:{i:02d}Z", "type": "JOB_START", "message": f"m{i}"}
        for i in range(count)
    ]


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgStore, PgStore]]:
    """Two daemons' stores on one database watching four jobs (2 s leases)."""
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        other = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        await one.sync_watched([(j, None) for j in JOBS], 1.0)
        yield one, other


async def test_one_log_written_by_two_daemons_at_once_is_stored_once(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """Both record the same grown log together: each event once, counted new by one writer."""
    one, other = two
    await one.record_poll(PollRecord("ft-00", 5.0, None, "running", events=_log(3)))
    results: list[PollResult] = []

    async def record(store: PgStore) -> None:
        rec = PollRecord("ft-00", 6.0, None, "running", events=_log(8))
        results.append(await store.record_poll(rec))

    async with anyio.create_task_group() as tg:
        for store in (one, other, one, other):
            tg.start_soon(record, store)
    assert sorted(r.new_events for r in results) == [0, 0, 0, 5]
    assert await other.events("ft-00") == _log(8)
    rows = query(pg_url, "SELECT COUNT(*), COUNT(DISTINCT digest) FROM events")
    assert rows == [(8, 8)]


async def test_event_writes_are_fenced_by_the_job_lease(two: tuple[PgStore, PgStore]) -> None:
    """A daemon that does not hold a job's lease stores none of its events."""
    one, other = two
    await one.claim_work()
    await other.claim_work()
    mine = await one.claim_work()  # gives back the other's share
    held = await other.claim_work()
    assert mine is not None and held is not None and mine and held
    theirs = sorted(held)[0]
    with pytest.raises(LeaseLostError):
        await one.record_events(theirs, _log(2), 5.0)
    with pytest.raises(LeaseLostError):
        await one.record_poll(PollRecord(theirs, 5.0, None, "running", events=_log(2)))
    assert await one.events(theirs) == []
    assert await other.record_events(theirs, _log(2), 5.0) == 2


async def test_budget_fires_once_per_period_across_daemons(two: tuple[PgStore, PgStore]) -> None:
    """Both daemons check a spent day at once, and again: one delivery for the day."""
    one, other = two
    await _completed(one, "ft-00", 3)
    limits = [(period("daily", T), 2 * NANO), (period("monthly", T), 10 * NANO)]
    fired: list[list[str]] = []

    async def check(store: PgStore) -> None:
        fired.append(await store.fire_budget(limits, PAGER, T))

    async with anyio.create_task_group() as tg:
        for store in (one, other, one, other):
            tg.start_soon(check, store)
    assert sorted(fired) == [[], [], [], ["budget:daily:2026-05-19:budget.exceeded:pager"]]
    assert [d.event for d in await other.deliveries()] == ["budget.exceeded"]


async def test_one_daemon_checks_the_budget_a_minute(two: tuple[PgStore, PgStore]) -> None:
    """The daemon holding the budget lease checks; the other leaves it to that one."""
    one, other = two
    hook = HookConfig("pager", CommandHook(("true",)), on=("budget.exceeded",))
    config = Config(budget=BudgetConfig(daily=1.0, monthly=5.0), hooks=(hook,))
    first, second = BudgetWatch(one, wall=lambda: T), BudgetWatch(other, wall=lambda: T)
    await _completed(one, "ft-00", 3)
    assert await first.check(config) == ["budget:daily:2026-05-19:budget.exceeded:pager"]
    await _completed(one, "ft-01", 3)  # now the month is over its limit too
    assert await second.check(config) == []  # the first holds the lease for the minute
    assert await first.check(config) == ["budget:monthly:2026-05:budget.exceeded:pager"]


async def _completed(store: PgStore, job_id: str, dollars: int) -> None:
    """A job created on 2026-05-19 that completed costing `dollars`."""
    price = dollars * NANO
    job = {"id": job_id, "created_at": "2026-05-19T11:00:00Z", "total_price": price}
    await store.record_poll(PollRecord(job_id, T, job, "completed", total_price=price))
