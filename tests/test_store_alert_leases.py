"""Alerts and cancels on a shared PostgreSQL store: only the job's lease holder writes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from tests.storeharness import execute
from watcherd.alerts.episodes import AlertChange, Evaluation
from watcherd.alerts.rules import Finding
from watcherd.alerts.state import AlertState
from watcherd.errors import LeaseLostError
from watcherd.store import HookSub, PollRecord
from watcherd.store.postgres.core import PgStore

pytestmark = pytest.mark.anyio

JOB = "ft-00"
HOOKS = (HookSub("pager", ("alert.*", "cancel_requested")),)
NAN = Finding("nonfinite", "train/loss is NaN", step=12, key="train/loss")
OPENED = Evaluation(
    AlertState(open={"nonfinite": 1}, episodes={"nonfinite": 1}, cancel="nonfinite"),
    (AlertChange("nonfinite", 1, True, 5.0, NAN.details(), action="cancel"),),
    cancel=NAN,
)


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgStore, PgStore]]:
    """Two daemons on one database; the first claimed the one watched job, then the second."""
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        other = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        await one.sync_watched([(JOB, None)], 1.0)
        assert await one.claim_work() == frozenset({JOB})
        assert await other.claim_work() == frozenset()
        yield one, other


def _page(at: float, status: str = "running", evaluation: Evaluation | None = None) -> PollRecord:
    return PollRecord(JOB, at, None, status, (), HOOKS, evaluation=evaluation)


def _expire(url: str, holder: str) -> None:
    """Make `holder`'s leases and heartbeat run out now (a daemon frozen or dead)."""
    execute(url, "UPDATE leases SET expires_at = 0 WHERE holder = ?", (holder,))
    execute(url, "UPDATE daemons SET expires_at = 0 WHERE instance = ?", (holder,))


async def test_only_the_lease_holder_records_an_episode_and_its_intent(
    two: tuple[PgStore, PgStore],
) -> None:
    """The other daemon's page with the same verdict is refused whole: one episode, one
    delivery, one intent."""
    one, other = two
    with pytest.raises(LeaseLostError):
        await other.record_poll(_page(5.0, evaluation=OPENED))
    assert await one.alerts() == [] and await one.cancels() == {}
    assert await one.deliveries() == []
    ids = (await one.record_poll(_page(5.0, evaluation=OPENED))).deliveries
    assert ids == [f"{JOB}:alert.nonfinite:1:pager"]
    assert [a.id for a in await other.alerts()] == [f"{JOB}:alert.nonfinite:1"]
    assert (await other.cancels())[JOB].state == "intent"


async def test_a_daemon_whose_lease_passed_neither_counts_nor_settles_a_cancel(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """After the holder's lease passes, its start and its outcomes are refused; the new
    holder counts the call as the first."""
    one, other = two
    await one.record_poll(_page(5.0, evaluation=OPENED))
    _expire(pg_url, one.member.instance)
    assert await other.claim_work() == frozenset({JOB})
    with pytest.raises(LeaseLostError):
        await one.start_cancel(JOB, 6.0)
    with pytest.raises(LeaseLostError):
        await one.finish_cancel(JOB, 6.0, "skipped", "the service refused it")
    with pytest.raises(LeaseLostError):
        await one.finish_cancel(JOB, 6.0, "requested", None, _page(6.0, "cancel_requested"))
    assert (await other.cancels())[JOB].attempts == 0
    assert await other.start_cancel(JOB, 7.0) == 1
    result = await other.finish_cancel(JOB, 8.0, "requested", None, _page(8.0, "cancel_requested"))
    assert result is not None and result.deliveries == [f"{JOB}:cancel_requested:pager"]
    record = (await one.cancels())[JOB]
    assert (record.state, record.attempts) == ("requested", 1)


async def test_an_ended_jobs_intent_is_settled_by_any_daemon(two: tuple[PgStore, PgStore]) -> None:
    """A job that ended holds no lease: any daemon settles its pending intent, once."""
    one, other = two
    await one.record_poll(_page(5.0, evaluation=OPENED))
    await one.record_poll(_page(9.0, "completed"))
    await other.finish_cancel(JOB, 10.0, "skipped", "the job was already completed")
    await one.finish_cancel(JOB, 11.0, "requested", None)  # too late: no longer pending
    record = (await one.cancels())[JOB]
    assert (record.state, record.finished_at) == ("skipped", 10.0)
