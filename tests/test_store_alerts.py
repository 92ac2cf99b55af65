"""Alert episodes and cancels in the store, on both backends: written with their page, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from watcherd.alerts.episodes import AlertChange, Evaluation
from watcherd.alerts.eta import Eta
from watcherd.alerts.rules import Finding
from watcherd.alerts.state import AlertState
from watcherd.store import HookSub, PollRecord
from watcherd.store.interface import StoreApi
from watcherd.store.opening import open_store

pytestmark = pytest.mark.anyio

HOOKS = (HookSub("pager", ("alert.*",)), HookSub("status", ("cancel_requested", "completed")))
NAN = Finding("nonfinite", "train/loss is NaN at step 120", step=120, key="train/loss")
OPENED = AlertChange("nonfinite", 1, True, 50.0, NAN.details(), action="cancel")
RESOLVED = AlertChange("nonfinite", 1, False, 90.0, {"message": "the job ended"})
STATE = AlertState(open={"nonfinite": 1}, episodes={"nonfinite": 1}, cancel="nonfinite")


@pytest.fixture
async def store(store_target: str | Path) -> AsyncIterator[StoreApi]:
    """A writer store watching ft-a and ft-b (unwatched ft-x is known too)."""
    async with open_store(store_target, writer=True) as st:
        await st.sync_watched([("ft-a", None), ("ft-b", None)], 1.0)
        await st.ensure_jobs(["ft-x"], 1.0)
        yield st


def _page(job_id: str, at: float, evaluation: Evaluation, status: str = "running") -> PollRecord:
    return PollRecord(job_id, at, None, status, (), HOOKS, evaluation=evaluation)


async def _open_nan(store: StoreApi, job_id: str = "ft-a") -> list[str]:
    """ft-a's page at t=50 opens a nonfinite episode and decides to cancel."""
    evaluation = Evaluation(STATE, (OPENED,), Eta(500.0, "step_rate"), NAN)
    return (await store.record_poll(_page(job_id, 50.0, evaluation))).deliveries


async def test_an_episode_and_its_intent_are_written_with_the_page_once(store: StoreApi) -> None:
    """One page: the episode, its delivery, the intent, the ETA; the same page again: nothing."""
    assert await _open_nan(store) == ["ft-a:alert.nonfinite:1:pager"]
    assert await _open_nan(store) == []
    [alert] = await store.alerts("ft-a")
    assert (alert.id, alert.action, alert.opened_at, alert.resolved_at) == (
        "ft-a:alert.nonfinite:1",
        "cancel",
        50.0,
        None,
    )
    assert alert.details["message"] == NAN.message and alert.details["step"] == 120
    record = (await store.cancels())["ft-a"]
    assert (record.requested_by, record.rule, record.state, record.attempts) == (
        "watcherd",
        "nonfinite",
        "intent",
        0,
    )
    state = (await store.job_states())["ft-a"]
    assert state.cancel_state == "intent"
    assert AlertState.from_json(state.alert_state) == STATE
    overview = next(j for j in await store.overview() if j.job_id == "ft-a")
    assert (overview.alerts, overview.eta_at, overview.eta_source) == (
        ("nonfinite",),
        500.0,
        "step_rate",
    )
    assert overview.cancel is not None and overview.cancel.state == "intent"


async def test_a_resolution_closes_the_episode_and_counts_only_watched_jobs(
    store: StoreApi,
) -> None:
    """Open counts are by rule over watched jobs; a resolution closes and is delivered once."""
    await _open_nan(store)
    await _open_nan(store, "ft-x")  # an unwatched job's episode is not counted
    assert await store.open_alert_counts() == {"nonfinite": 1}
    assert [a.job_id for a in await store.alerts(open_only=True)] == ["ft-a", "ft-x"]
    closing = Evaluation(AlertState(episodes={"nonfinite": 1}), (RESOLVED,))
    ids = (await store.record_poll(_page("ft-a", 90.0, closing, "error"))).deliveries
    assert ids == ["ft-a:alert.nonfinite:1.resolved:pager"]
    assert await store.open_alert_counts() == {}
    [alert] = await store.alerts("ft-a")
    assert alert.resolved_at == 90.0 and alert.details["resolution"]["message"] == "the job ended"
    assert await store.alerts("ft-a", open_only=True) == []
    found = await store.job("ft-a")
    assert found is not None and found[0].alerts == ()


async def test_a_cancel_is_counted_before_each_call_and_settled_once(store: StoreApi) -> None:
    """Each call is counted first; the answer settles it, with the job's new status."""
    await _open_nan(store)
    assert await store.start_cancel("ft-a", 60.0) == 1
    await store.finish_cancel("ft-a", 61.0, "intent", "503 from the service")
    assert (await store.cancels("ft-a"))["ft-a"].last_error == "503 from the service"
    assert await store.start_cancel("ft-a", 70.0) == 2
    answer = PollRecord("ft-a", 71.0, None, "cancel_requested", (), HOOKS)
    result = await store.finish_cancel("ft-a", 71.0, "requested", None, answer)
    assert result is not None and result.transition == ("running", "cancel_requested")
    assert result.deliveries == ["ft-a:cancel_requested:status"]
    record = (await store.cancels("ft-a"))["ft-a"]
    assert (record.state, record.attempts, record.called_at, record.finished_at) == (
        "requested",
        2,
        70.0,
        71.0,
    )
    assert record.last_error is None
    assert await store.start_cancel("ft-a", 80.0) == 0  # nothing pending: no call
    await store.finish_cancel("ft-a", 81.0, "skipped", "late")  # a settled cancel stays
    assert (await store.cancels("ft-a"))["ft-a"].state == "requested"


async def test_a_persons_cancel_is_kept_over_the_daemons_outcome(store: StoreApi) -> None:
    """A person cancels while the daemon's intent is pending: no more calls are counted,
    and the daemon's late outcome does not overwrite who cancelled."""
    await _open_nan(store)
    assert await store.start_cancel("ft-a", 60.0) == 1
    await store.user_cancel("ft-a", 62.0, "by hand")
    assert await store.start_cancel("ft-a", 63.0) == 0
    await store.finish_cancel("ft-a", 64.0, "intent", "timed out")
    record = (await store.cancels("ft-a"))["ft-a"]
    assert (record.requested_by, record.rule, record.reason, record.state) == (
        "user",
        None,
        "by hand",
        "requested",
    )
    assert (record.attempts, record.last_error) == (2, None)
    await store.user_cancel("ft-new", 65.0, "never watched")  # its job row is made too
    assert (await store.cancels())["ft-new"].requested_by == "user"
    assert "ft-new" in {j.job_id for j in await store.overview(include_unwatched=True)}


async def test_delivery_extras_name_the_alert_the_eta_and_the_cancel(store: StoreApi) -> None:
    """An alert's delivery gets its episode; every delivery of the job its ETA and cancel."""
    await _open_nan(store)
    [delivery] = await store.deliveries("ft-a")
    extras = await store.delivery_extras(delivery)
    assert extras["alert"].id == "ft-a:alert.nonfinite:1"
    assert extras["eta"] == (500.0, "step_rate")
    assert extras["cancel"].state == "intent"
    await store.record_poll(PollRecord("ft-b", 5.0, None, "completed", (), HOOKS))
    [plain] = await store.deliveries("ft-b")
    assert await store.delivery_extras(plain) == {}
