"""Recording polls: exact values, de-duplication, transitions and the outbox."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import pytest
from structlog.testing import capture_logs

from watcherd.errors import StoreError
from watcherd.model import MISSING, MetricRow, dumps_exact
from watcherd.store import HookLike, HookSub, PollRecord, PollResult, Store, writer
from watcherd.store.interface import StoreApi
from watcherd.store.opening import open_store
from watcherd.store.rows import page_rows

pytestmark = pytest.mark.anyio

T0 = 1_779_196_193_564_587_001  # not representable as a float: must survive exactly
HOOKS = (HookSub("deploy", ("completed",)), HookSub("team", ("completed", "error", MISSING)))


def train(step: int, loss: Any = 1.0, **extra: Any) -> MetricRow:
    """A train row as the API sends it."""
    row = {"timestamp": T0 + step * 1000, "train/global_step": step, "train/loss": loss}
    return row | extra


def evaluation(step: int, loss: Any = 2.0) -> MetricRow:
    """An eval row at `step`, stamped just after the train row."""
    return {"timestamp": T0 + step * 1000 + 1, "train/global_step": step, "eval/loss": loss}


def poll(
    status: str | None,
    rows: Sequence[MetricRow] = (),
    *,
    at: float = 10.0,
    job: dict[str, Any] | None = None,
    hooks: Sequence[HookLike] = HOOKS,
) -> PollRecord:
    """A PollRecord for job ft-a."""
    return PollRecord("ft-a", at, job, status, rows, hooks)


@pytest.fixture
async def store(store_target: str | Path) -> AsyncIterator[StoreApi]:
    """A writer store on a fresh file, watching ft-a."""
    async with open_store(store_target, writer=True) as st:
        await st.sync_watched([("ft-a", "note")], 1.0)
        yield st


async def test_values_round_trip_exactly(store: StoreApi) -> None:
    """NaN, ±Infinity, huge integers and key order come back exactly as received."""
    rows = [
        {"train/loss": math.nan, "timestamp": T0, "train/global_step": 1, "x": 2**70},
        train(2, math.inf, **{"train/grad_norm": -math.inf, "train/epoch": 0.1}),
        evaluation(2, 0.1),
    ]
    await store.record_poll(poll("running", rows))
    assert await store.metrics_json("ft-a") == [dumps_exact(r) for r in rows]
    first, second, third = await store.all_metrics("ft-a")
    assert list(first) == ["train/loss", "timestamp", "train/global_step", "x"]
    assert math.isnan(first["train/loss"]) and first["x"] == 2**70
    assert type(first["timestamp"]) is int and first["timestamp"] == T0
    assert second["train/loss"] == math.inf and second["train/grad_norm"] == -math.inf
    assert third == evaluation(2, 0.1)


async def test_the_same_page_twice_adds_nothing(store: StoreApi) -> None:
    """Re-recording an identical page inserts no rows and reports none new."""
    rows = [train(1), train(2), evaluation(2)]
    assert (await store.record_poll(poll("running", rows))).new_rows == 3
    assert (await store.record_poll(poll("running", rows))).new_rows == 0
    assert await store.metrics_json("ft-a") == [dumps_exact(r) for r in rows]


async def test_an_inclusive_refetch_adds_only_the_late_rows(store: StoreApi) -> None:
    """Fetching again from the highest step keeps old rows once and adds the late eval."""
    await store.record_poll(poll("running", [train(1), train(2)]))
    result = await store.record_poll(poll("running", [train(2), evaluation(2), train(3)]))
    assert result.new_rows == 2
    assert [r["train/global_step"] for r in await store.all_metrics("ft-a")] == [1, 2, 2, 3]
    assert (await store.job_states())["ft-a"].max_step == 3


async def test_transitions_are_recorded_in_order_once_each(store: StoreApi) -> None:
    """Each status change is one transition row; a repeated status adds none."""
    results = [
        await store.record_poll(poll(status, at=at))
        for at, status in enumerate(["pending", "pending", "running", "completed"], start=1)
    ]
    assert [r.transition for r in results] == [
        (None, "pending"),
        None,
        ("pending", "running"),
        ("running", "completed"),
    ]
    history = await store.transitions("ft-a")
    assert [(t.from_status, t.to_status, t.observed_at) for t in history] == [
        (None, "pending", 1.0),
        ("pending", "running", 3.0),
        ("running", "completed", 4.0),
    ]


async def test_a_status_only_poll_leaves_metrics_and_job_object_alone(store: StoreApi) -> None:
    """A list-endpoint sighting (job=None, no rows) changes the status only."""
    job = {"id": "ft-a", "status": "running", "model": "m", "progress": {"seconds_remaining": 7}}
    await store.record_poll(poll("running", [train(1)], job=job))
    await store.record_poll(poll("completed", job=None))
    found = await store.job("ft-a")
    assert found is not None
    view, raw = found
    assert (view.status, view.model, view.step, raw) == ("completed", "m", 1, job)


async def test_outbox_rows_are_created_once_per_job_status_and_hook(store: StoreApi) -> None:
    """A re-detected transition writes no second delivery for the same (job, status, hook)."""
    first = await store.record_poll(poll("completed"))
    await store.record_poll(poll("running"))
    again = await store.record_poll(poll("completed"))
    assert first.deliveries == ["ft-a:completed:deploy", "ft-a:completed:team"]
    assert again.transition == ("running", "completed") and again.deliveries == []
    assert sorted(d.id for d in await store.deliveries("ft-a")) == first.deliveries
    assert len(await store.transitions("ft-a")) == 3


async def test_deliveries_carry_the_transition(store: StoreApi) -> None:
    """The outbox row holds event, previous status, occurred_at and is due at once."""
    await store.record_poll(poll("running", at=5.0))
    await store.record_poll(poll("error", at=9.0))
    (delivery,) = await store.deliveries()
    assert (delivery.id, delivery.hook, delivery.event) == ("ft-a:error:team", "team", "error")
    assert (delivery.previous_status, delivery.occurred_at) == ("running", 9.0)
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == ("pending", 0, 9.0)


async def test_a_not_null_violation_raises_and_writes_nothing(store: StoreApi) -> None:
    """A NULL in a NOT NULL column is an error, and the whole page is rolled back."""
    broken = HookSub(None, ("completed",))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"(?i)not.null"):
        await store.record_poll(poll("completed", [train(1)], hooks=[broken]))
    assert await store.all_metrics("ft-a") == []
    assert await store.transitions("ft-a") == []
    assert (await store.job_states())["ft-a"].status is None


async def test_an_unstorable_row_is_refused_before_anything_is_written(store: StoreApi) -> None:
    """A row without train/global_step raises StoreError naming the row; nothing is kept."""
    with pytest.raises(StoreError, match="metric row 1"):
        await store.record_poll(poll("running", [train(1), {"timestamp": T0}]))
    assert await store.all_metrics("ft-a") == []


async def test_not_found_count_grows_then_a_success_resets_it(store: StoreApi) -> None:
    """404s in a row are counted; other errors keep the count; a good poll clears both."""
    counts = [
        await store.record_failure("ft-a", 1.0, "404", not_found=True),
        await store.record_failure("ft-a", 2.0, "timeout", not_found=False),
        await store.record_failure("ft-a", 3.0, "404", not_found=True),
    ]
    assert counts == [1, 1, 2]
    assert (await store.job_states())["ft-a"].last_error == "404"
    await store.record_poll(poll("running"))
    state = (await store.job_states())["ft-a"]
    assert (state.not_found_count, state.last_error, state.last_poll_at) == (0, None, 10.0)


async def test_mark_missing_transitions_once_and_queues_subscribed_hooks(store: StoreApi) -> None:
    """`missing` is a transition like any other; hooks on it get a delivery."""
    await store.record_poll(poll("running"))
    result = await store.mark_missing("ft-a", 20.0, HOOKS)
    assert result.transition == ("running", MISSING)
    assert result.deliveries == ["ft-a:missing:team"]
    assert (await store.mark_missing("ft-a", 21.0, HOOKS)).transition is None


async def test_sync_watched_adds_renotes_and_unwatches_keeping_history(store: StoreApi) -> None:
    """The watched set follows the configuration; unwatched jobs stay in the database."""
    await store.record_poll(poll("running", [train(1)]))
    await store.sync_watched([("ft-b", "new"), ("ft-c", None)], 2.0)
    await store.sync_watched([("ft-b", "renamed"), ("ft-a", None)], 3.0)
    assert sorted(await store.job_states()) == ["ft-a", "ft-b"]
    everything = await store.overview(include_unwatched=True)
    assert [(j.job_id, j.note, j.watched) for j in everything] == [
        ("ft-a", None, True),
        ("ft-b", "renamed", True),
        ("ft-c", None, False),
    ]
    assert len(await store.all_metrics("ft-a")) == 1


async def test_overview_shows_progress_losses_and_hook_states(store: StoreApi) -> None:
    """Denormalized fields: seconds_remaining, last losses (NaN kept), hooks by state."""
    job = {"progress": {"estimate_available": True, "seconds_remaining": 90}}
    rows = [train(1, 3.0), evaluation(1, math.inf), train(2, math.nan)]
    await store.record_poll(poll("running", rows, job=job))
    assert (await store.overview())[0].seconds_remaining == 90
    await store.record_poll(poll("completed"))
    await store.start_attempt("ft-a:completed:deploy", 11.0)
    (view,) = await store.overview()
    assert view.seconds_remaining is None and view.step == 2
    assert math.isnan(view.train_loss or 0.0) and view.eval_loss == math.inf
    assert view.hooks == {"pending": 1, "running": 1}


async def test_summary_gives_last_and_best_loss_ignoring_nan(store: StoreApi) -> None:
    """Best loss is the smallest non-NaN value; last loss is the last row's, NaN or not."""
    await store.record_poll(poll("running", [train(1, 2.0), train(2, 0.5), evaluation(2, 1.5)]))
    await store.record_poll(poll("running", [train(3, math.nan), evaluation(3, 1.25)]))
    summary = await store.metrics_summary("ft-a")
    assert summary.last_step == 3 and math.isnan(summary.last_train_loss or 0.0)
    assert (summary.best_train_loss, summary.last_eval_loss, summary.best_eval_loss) == (
        0.5,
        1.25,
        1.25,
    )


async def test_daemon_state_host_pauses_and_last_poll(store: StoreApi) -> None:
    """Key/value state round-trips, None deletes, host pauses and the last poll are kept."""
    await store.set_state("auth", "401 from api")
    await store.set_host_pause("api.together.ai", 1234.5)
    await store.set_host_pause("other", 1.0)
    await store.set_host_pause("other", None)
    assert await store.get_state("auth") == "401 from api"
    await store.set_state("auth", None)
    assert await store.get_state("auth") is None
    assert await store.host_pauses() == {"api.together.ai": 1234.5}
    assert await store.last_successful_poll() is None
    await store.record_poll(poll("running", at=77.25))
    assert await store.last_successful_poll() == 77.25


async def test_clearing_host_pauses_lifts_them_all_and_nothing_else(store: StoreApi) -> None:
    """clear_host_pauses deletes every stored pause, returns them, keeps other state."""
    await store.set_host_pause("api.together.ai", 1e300)
    await store.set_host_pause("other", 5.0)
    await store.set_state("host_pause:broken", "not a number")
    await store.set_state("auth", "401")
    assert await store.host_pauses() == {"api.together.ai": 1e300, "other": 5.0}
    assert await store.clear_host_pauses() == {"api.together.ai": 1e300, "other": 5.0}
    assert await store.host_pauses() == {} and await store.get_state("auth") == "401"


async def test_events_are_deduplicated_by_time_type_and_message(store: StoreApi) -> None:
    """The same event twice is stored once; a different message is a new event."""
    first = {"created_at": "2026-05-19T13:01:02Z", "type": "job_start", "message": "go"}
    second = first | {"message": "again"}
    assert await store.record_events("ft-a", [first], 1.0) == 1
    assert await store.record_events("ft-a", [first | {"level": "info"}, second], 2.0) == 1
    assert await store.events("ft-a") == [first, second]


async def test_ensure_jobs_and_job_states_for_chosen_jobs(store: StoreApi) -> None:
    """`wait` without a daemon: rows for unknown jobs, states for exactly those jobs."""
    await store.ensure_jobs(["ft-a", "ft-z"], 5.0)
    await store.record_poll(PollRecord("ft-z", 6.0, None, "queued"))
    chosen = await store.job_states(only={"ft-z", "ft-unknown"})
    assert list(chosen) == ["ft-z"] and chosen["ft-z"].status == "queued"
    assert list(await store.job_states()) == ["ft-a"]
    assert (await store.job("ft-a")) is not None
    assert [j.note for j in await store.overview()] == ["note"]


async def test_concurrent_polls_share_a_commit_and_a_bad_page_fails_alone(store: StoreApi) -> None:
    """Polls recorded at once are group-committed; one broken page fails, the others land."""
    jobs = [f"ft-{i}" for i in range(12)]
    await store.sync_watched([(j, None) for j in jobs], 1.0)
    broken = HookSub(None, ("completed",))  # type: ignore[arg-type]
    results: dict[str, PollResult | StoreError] = {}

    async def record(job_id: str) -> None:
        hooks = [broken] if job_id == "ft-5" else HOOKS
        rec = PollRecord(job_id, 10.0, None, "completed", [train(1), train(2)], hooks)
        try:
            results[job_id] = await store.record_poll(rec)
        except StoreError as exc:
            results[job_id] = exc

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            for job_id in jobs:
                tg.start_soon(record, job_id)
    assert isinstance(results.pop("ft-5"), StoreError)
    if isinstance(store, Store):  # SQLite's group commit says why it wrote page by page
        assert any(e["event"] == "store.group_commit_split" for e in logs)
    landed = [r for r in results.values() if isinstance(r, PollResult)]
    assert len(landed) == 11
    assert all(r.new_rows == 2 and r.transition == (None, "completed") for r in landed)
    assert await store.all_metrics("ft-5") == []
    for job_id in results:
        assert len(await store.all_metrics(job_id)) == 2
        assert [d.id for d in await store.deliveries(job_id)] == [
            f"{job_id}:completed:deploy",
            f"{job_id}:completed:team",
        ]


def _log(*messages: str, status_word: str = "job_start") -> list[dict[str, Any]]:
    """Events at one-second steps, the last of type `status_word`."""
    kinds = ["job_pending"] * (len(messages) - 1) + [status_word]
    return [
        {"created_at": f"2026-05-19T13:00:0{i}Z", "type": k, "message": m, "level": "info"}
        for i, (k, m) in enumerate(zip(kinds, messages, strict=True))
    ]


async def test_polled_events_are_stored_once_as_the_log_grows(store: StoreApi) -> None:
    """Each poll hands in the whole log; only events not stored before are added."""
    first = _log("created", "started")
    grown = [*first, *_log("a", "b", "c", status_word="epoch_complete")[2:]]
    one = await store.record_poll(PollRecord("ft-a", 10.0, None, "running", events=first))
    again = await store.record_poll(PollRecord("ft-a", 11.0, None, "running", events=first))
    two = await store.record_poll(PollRecord("ft-a", 12.0, None, "running", events=grown))
    assert (one.new_events, again.new_events, two.new_events) == (2, 0, 1)
    assert await store.events("ft-a") == grown


async def test_terminal_job_gets_its_reason_and_price(store: StoreApi) -> None:
    """Turning terminal with an error event sets the reason; price and tokens are kept."""
    log = [
        *_log("created", "started"),
        *_log("x", "Out of GPU memory", status_word="JOB_ERROR")[1:],
    ]
    running = PollRecord(
        "ft-a", 10.0, None, "running", events=log[:2], total_price=5, token_count=9
    )
    await store.record_poll(running)
    (before,) = await store.overview()
    assert (before.reason, before.total_price, before.token_count) == (None, 5, 9)
    done = PollRecord("ft-a", 20.0, {"id": "ft-a"}, "error", events=log, total_price=7)
    await store.record_poll(done)
    (after,) = await store.overview()
    assert (after.reason, after.total_price, after.token_count) == ("Out of GPU memory", 7, 9)


async def test_restart_events_name_the_new_job_once(store: StoreApi) -> None:
    """A new `job_restarted` event reports the job it names; seen again, it reports nothing."""
    log = _log("created", "Job restarted as ft-b from step 5", status_word="job_restarted")
    first = await store.record_poll(PollRecord("ft-a", 10.0, None, "error", events=log))
    again = await store.record_poll(PollRecord("ft-a", 11.0, None, "error", events=log))
    assert (first.restarts, again.restarts) == (("ft-b",), ())


async def test_a_group_commit_larger_than_a_compound_select_is_one_transaction(
    tmp_path: Path,
) -> None:
    """600 pages in one SQLite transaction (more than the 500 terms SQLite lets one
    compound SELECT hold): each is recorded with its own rows, none refused."""
    db, jobs = tmp_path / "w.db", [f"ft-{i:03d}" for i in range(600)]
    async with open_store(db, writer=True) as st:
        await st.sync_watched([(j, None) for j in jobs], 1.0)
    batch = []
    for i, job_id in enumerate(jobs):
        rec = PollRecord(job_id, 10.0, None, "running", [train(s) for s in range(i % 3 + 1)])
        batch.append((rec, page_rows(job_id, rec.metrics, ())))
    async with aiosqlite.connect(db, isolation_level=None) as conn:
        await conn.execute("BEGIN IMMEDIATE")
        results = await writer.record_polls(conn, batch)
        await conn.execute("COMMIT")
    assert [r.new_rows for r in results] == [i % 3 + 1 for i in range(600)]


async def test_polls_arriving_on_successive_loop_passes_share_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight polls, each ready one event-loop pass after the one before (as answers come
    in one by one): the first poll's commit waits while each pass brings another, so
    all eight are written in one transaction. With one pass it took two or three."""
    jobs = [f"ft-{i}" for i in range(8)]
    batches: list[int] = []
    record_polls = writer.record_polls

    async def counted(conn: aiosqlite.Connection, batch: Sequence[Any]) -> list[PollResult]:
        batches.append(len(batch))
        return await record_polls(conn, batch)

    monkeypatch.setattr(writer, "record_polls", counted)
    async with open_store(tmp_path / "w.db", writer=True) as st:
        await st.sync_watched([(j, None) for j in jobs], 1.0)

        async def poll(i: int) -> None:
            for _ in range(i):
                await anyio.lowlevel.checkpoint()
            await st.record_poll(PollRecord(jobs[i], 10.0, None, "running", [train(1)]))

        async with anyio.create_task_group() as tg:
            for i in range(len(jobs)):
                tg.start_soon(poll, i)
        assert batches == [8]
        for job_id in jobs:
            assert len(await st.all_metrics(job_id)) == 1
