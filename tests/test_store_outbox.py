"""The hook outbox lifecycle: due, start, finish, dead, crash recovery, requeue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.storeharness import execute
from watcherd.errors import StoreError
from watcherd.store import HookSub, PollRecord
from watcherd.store.interface import StoreApi
from watcherd.store.opening import open_store

pytestmark = pytest.mark.anyio

HOOKS = (HookSub("deploy", ("completed",)), HookSub("team", ("completed",)))
DEPLOY, TEAM = "ft-a:completed:deploy", "ft-a:completed:team"


@pytest.fixture
async def store(store_target: str | Path) -> AsyncIterator[StoreApi]:
    """A writer store where ft-a completed at t=100 with two hooks queued."""
    async with open_store(store_target, writer=True) as st:
        await st.sync_watched([("ft-a", None)], 1.0)
        await st.record_poll(PollRecord("ft-a", 100.0, None, "completed", (), HOOKS))
        yield st


async def _state(store: StoreApi, ident: str) -> tuple[str, int, float | None]:
    found = {d.id: d for d in await store.deliveries()}[ident]
    return found.state, found.attempts, found.next_attempt_at


async def test_new_deliveries_are_due_at_the_transition(store: StoreApi) -> None:
    """Pending rows fall due at occurred_at, not before."""
    assert await store.due_deliveries(99.0, limit=10) == []
    assert [d.id for d in await store.due_deliveries(100.0, limit=10)] == [DEPLOY, TEAM]
    assert [d.id for d in await store.due_deliveries(100.0, limit=1)] == [DEPLOY]
    assert await store.next_delivery_due() == 100.0


async def test_a_started_delivery_is_not_due_and_counts_attempts(store: StoreApi) -> None:
    """start_attempt marks running, returns 1, 2, ... and hides the row from due."""
    assert await store.start_attempt(DEPLOY, 101.0) == 1
    assert [d.id for d in await store.due_deliveries(200.0, limit=10)] == [TEAM]
    await store.finish_attempt(
        DEPLOY, 102.0, outcome="failed", error="exit 1", output_tail="boom", next_attempt_at=160.0
    )
    assert await _state(store, DEPLOY) == ("failed", 1, 160.0)
    assert [d.id for d in await store.due_deliveries(159.0, limit=10)] == [TEAM]
    assert await store.start_attempt(DEPLOY, 160.0) == 2


async def test_delivered_and_dead_are_final_and_keep_the_error(store: StoreApi) -> None:
    """delivered and dead rows are never due again; the last error and output stay."""
    await store.start_attempt(DEPLOY, 101.0)
    await store.finish_attempt(
        DEPLOY, 102.0, outcome="delivered", error=None, output_tail="ok", next_attempt_at=None
    )
    await store.start_attempt(TEAM, 101.0)
    await store.finish_attempt(
        TEAM, 102.0, outcome="dead", error="410 Gone", output_tail=None, next_attempt_at=None
    )
    assert await store.due_deliveries(1e12, limit=10) == []
    assert await store.next_delivery_due() is None
    team = {d.id: d for d in await store.deliveries("ft-a")}[TEAM]
    assert (team.state, team.last_error, team.updated_at) == ("dead", "410 Gone", 102.0)


async def test_recover_interrupted_turns_running_into_failed_due_now(
    store: StoreApi, store_target: str | Path
) -> None:
    """A delivery cut by a crash (running, no outcome; on a shared database, once its
    lease ran out in the database's clock) is retried with the same id."""
    await store.start_attempt(DEPLOY, 101.0)
    if not isinstance(store_target, Path):  # its daemon died a lease ago
        execute(store_target, "UPDATE deliveries SET lease_expires = 0")
    assert await store.recover_interrupted(500.0) == [DEPLOY]
    assert await _state(store, DEPLOY) == ("failed", 1, 500.0)
    assert await store.recover_interrupted(501.0) == []
    assert await store.start_attempt(DEPLOY, 502.0) == 2


async def test_requeue_resets_attempts_and_refuses_running_rows(store: StoreApi) -> None:
    """`hooks retry`: a dead delivery goes back to pending, due now, same id."""
    await store.start_attempt(TEAM, 101.0)
    assert await store.requeue(TEAM, 102.0) is False
    await store.finish_attempt(
        TEAM, 103.0, outcome="dead", error="x", output_tail=None, next_attempt_at=None
    )
    assert await store.requeue(TEAM, 104.0) is True
    assert await _state(store, TEAM) == ("pending", 0, 104.0)
    assert await store.requeue("ft-a:completed:nope", 104.0) is False


async def test_delivery_context_has_the_job_object_and_summary(store: StoreApi) -> None:
    """The payload parts: the delivery, the last job object, the metrics summary."""
    job = {"id": "ft-a", "status": "completed", "model_output_name": "org/m"}
    row = {"timestamp": 5, "train/global_step": 4, "train/loss": 0.25}
    await store.record_poll(PollRecord("ft-a", 110.0, job, "completed", [row], HOOKS))
    delivery, raw, summary = await store.delivery_context(DEPLOY)
    assert (delivery.id, raw, summary.last_step, summary.last_train_loss) == (DEPLOY, job, 4, 0.25)


async def test_unknown_deliveries_and_outcomes_are_errors(store: StoreApi) -> None:
    """Unknown ids raise StoreError; an unknown outcome raises ValueError and changes nothing."""
    with pytest.raises(StoreError):
        await store.start_attempt("ft-a:completed:nope", 1.0)
    with pytest.raises(StoreError):
        await store.delivery_context("ft-a:completed:nope")
    with pytest.raises(ValueError, match="outcome"):
        await store.finish_attempt(
            DEPLOY, 1.0, outcome="maybe", error=None, output_tail=None, next_attempt_at=None
        )
    assert await _state(store, DEPLOY) == ("pending", 0, 100.0)
