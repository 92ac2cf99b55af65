"""Alerts through the real poller and store (both backends): episodes, deliveries,
restarts and cancels."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alertharness import LONG_QUEUE, START, SUDDEN_NAN, world_of
from tests.storeharness import execute
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, CommandHook, Config, HookConfig, PollConfig
from watcherd.config.alerting import AlertsConfig
from watcherd.hooks import build_payload
from watcherd.sim import ManualClock, SimServer, serve
from watcherd.store.interface import StoreApi
from watcherd.store.opening import open_store
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio

HOOKS = (
    HookConfig("nan", CommandHook(("true",)), on=("alert.nonfinite",)),
    HookConfig("all", CommandHook(("true",)), on=("alert.*", "completed")),
    HookConfig("plain", CommandHook(("true",))),
)
ARMED = dataclasses.replace(
    AlertsConfig(), nonfinite=dataclasses.replace(AlertsConfig().nonfinite, action="cancel")
)


def config_for(sim: SimServer, **changes: Any) -> Config:
    """A daemon config against the sim: default timings, the three hooks above."""
    api = ApiConfig(base_url=sim.base_url, max_rate=1e6)
    return dataclasses.replace(Config(api=api, poll=PollConfig(), hooks=HOOKS), **changes)


@asynccontextmanager
async def poller_for(
    target: str | Path, sim: SimServer, clock: ManualClock, config: Config
) -> AsyncIterator[tuple[StoreApi, Poller]]:
    """A store at `target` (either backend) and a poller watching every sim job, on the
    sim's clock."""
    async with (
        open_store(target, writer=True) as store,
        httpx.AsyncClient() as http,
    ):
        await store.sync_watched([(j, None) for j in sim.world.job_ids()], clock())
        api = ApiClient.from_config(http, config.api, "k")
        poller = Poller(store, api, config, wall=clock, monotonic=clock)
        await poller.load_jobs()
        yield store, poller


async def run_until(poller: Poller, clock: ManualClock, end: float) -> None:
    """Poll round after round, jumping the clock to the next due time, until `end`."""
    while clock() < end and not poller.settled():
        await poller.poll_due()
        due = min((j.next_at for j in poller.live_jobs()), default=end)
        clock.set(max(due, clock() + 0.5))


def cancel_calls(sim: SimServer) -> int:
    """POSTs to /cancel the simulator has served."""
    return sum(1 for r in sim.stats.snapshot() if r.path.endswith("/cancel"))


async def test_an_alert_is_one_episode_with_deliveries_for_subscribers_only(
    store_target: str | Path,
) -> None:
    """A NaN job: one episode, opened and resolved for subscribers; the default hook: status."""
    world, clock = world_of(SUDDEN_NAN)
    job = world.job_ids()[0]
    async with (
        serve(world) as sim,
        poller_for(store_target, sim, clock, config_for(sim)) as (st, p),
    ):
        await run_until(p, clock, START + 4 * 3600)
        alerts = await st.alerts(job)
        ids = sorted(d.id for d in await st.deliveries(job))
    assert [(a.rule, a.episode, a.resolved_at is not None) for a in alerts] == [
        ("nonfinite", 1, True)
    ]
    assert ids == sorted(
        [
            f"{job}:alert.nonfinite:1:nan",
            f"{job}:alert.nonfinite:1.resolved:nan",
            f"{job}:alert.nonfinite:1:all",
            f"{job}:alert.nonfinite:1.resolved:all",
            f"{job}:error:plain",
        ]
    )


async def test_the_payload_carries_the_alert_and_the_eta(store_target: str | Path) -> None:
    """The opening's payload: type alert.nonfinite, rule, step, key, NaN as null, the ETA."""
    world, clock = world_of(SUDDEN_NAN | {"estimate": False})
    job = world.job_ids()[0]
    async with (
        serve(world) as sim,
        poller_for(store_target, sim, clock, config_for(sim)) as (st, p),
    ):
        await run_until(p, clock, START + 1400)
        delivery, raw, summary = await st.delivery_context(f"{job}:alert.nonfinite:1:nan")
        payload = build_payload(delivery, raw, summary, await st.delivery_extras(delivery))
    assert payload["type"] == "alert.nonfinite"
    assert payload["status"] == "running"
    alert = payload["alert"]
    assert (alert["id"], alert["rule"], alert["state"]) == (
        f"{job}:alert.nonfinite:1",
        "nonfinite",
        "open",
    )
    assert (alert["key"], alert["value"]) == ("train/loss", None)
    assert alert["step"] == 120  # where the NaN run began
    assert payload["eta"]["source"] in ("step_rate", "first_epoch")


async def test_a_restart_and_a_re_poll_never_repeat_an_alert(store_target: str | Path) -> None:
    """Stopping mid-episode, starting again from the database and polling twice adds nothing."""
    world, clock = world_of(SUDDEN_NAN)
    job = world.job_ids()[0]
    async with serve(world) as sim:
        config = config_for(sim)
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await run_until(poller, clock, START + 1400)
            before = sorted(d.id for d in await store.deliveries(job))
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await poller.poll_once()
            await poller.poll_once()
            after = sorted(d.id for d in await store.deliveries(job))
            await run_until(poller, clock, START + 4 * 3600)
            alerts = await store.alerts(job)
    assert before == after == [f"{job}:alert.nonfinite:1:all", f"{job}:alert.nonfinite:1:nan"]
    assert [(a.rule, a.episode) for a in alerts] == [("nonfinite", 1)]


async def test_an_armed_cancel_is_called_once_and_stops_the_job(store_target: str | Path) -> None:
    """Armed cancel: one POST, cancel_requested then cancelled, stopped early, who and why."""
    world, clock = world_of(SUDDEN_NAN | {"final": "completed"})
    job = world.job_ids()[0]
    async with serve(world) as sim:
        config = config_for(sim, alerts=ARMED, allow_cancel=True)
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await run_until(poller, clock, START + 4 * 3600)
            record = (await store.cancels(job))[job]
            statuses = [t.to_status for t in await store.transitions(job)]
            overview = (await store.job(job))[0]  # type: ignore[index]
        calls = cancel_calls(sim)
    assert calls == 1
    assert statuses[-2:] == ["cancel_requested", "cancelled"]
    assert (record.requested_by, record.rule, record.state) == (
        "watcherd",
        "nonfinite",
        "requested",
    )
    assert overview.step is not None and overview.step < 300


async def test_cancel_is_not_called_again_after_a_crash_past_the_call(
    store_target: str | Path,
) -> None:
    """On restart an intent whose call landed is settled without a call; an unmade one is made."""
    world, clock = world_of(SUDDEN_NAN | {"final": "completed"}, LONG_QUEUE)
    nan_job, queued = world.job_ids()
    async with serve(world) as sim:
        config = config_for(sim, alerts=ARMED, allow_cancel=True)
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await run_until(poller, clock, START + 1400)
        calls = cancel_calls(sim)
        _forge_intent(store_target, nan_job, attempts=1)  # as if killed right after the call
        _forge_intent(store_target, queued, attempts=0)  # as if killed before the call
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await poller.poll_once()
            records = await store.cancels()
        calls = cancel_calls(sim) - calls
    assert calls == 1  # the queued job's, made now; none for the NaN job
    assert records[nan_job].state == "requested"
    assert records[queued].state == "requested"


def _forge_intent(target: str | Path, job_id: str, *, attempts: int) -> None:
    """Put a cancel back to `intent`, the state a kill between decision and outcome leaves."""
    execute(
        target,
        "INSERT INTO cancels (job_id, requested_by, rule, reason, decided_at, cancel_state,"
        " attempts)"
        " VALUES (?, 'watcherd', 'nonfinite', 'test', 0, 'intent', ?)"
        " ON CONFLICT(job_id) DO UPDATE SET cancel_state = 'intent',"
        " attempts = excluded.attempts",
        (job_id, attempts),
    )


async def test_a_cancel_a_person_made_meanwhile_is_not_made_again(
    store_target: str | Path,
) -> None:
    """The daemon holds a pending intent; a person's cancel is recorded before its next
    poll: the daemon settles without a call of its own."""
    world, clock = world_of(LONG_QUEUE)
    [queued] = world.job_ids()
    async with serve(world) as sim:
        config = config_for(sim, alerts=ARMED, allow_cancel=True)
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await poller.poll_once()
        _forge_intent(store_target, queued, attempts=0)
        async with poller_for(store_target, sim, clock, config) as (store, poller):
            await store.user_cancel(queued, clock(), "by hand")
            await poller.poll_once()
            record = (await store.cancels())[queued]
            pending = poller.jobs[queued].cancel_pending
    assert cancel_calls(sim) == 0
    assert (record.requested_by, record.state, pending) == ("user", "requested", False)


async def test_on_a_shared_database_a_stale_daemon_neither_alerts_nor_cancels(
    pg_url: str,
) -> None:
    """Two daemons on PostgreSQL: the first holds the job, freezes, its lease passes. Its
    late poll of the NaN is refused whole (no episode, no cancel call); the new holder
    opens the one episode and makes the one call."""
    world, clock = world_of(SUDDEN_NAN | {"final": "completed"})
    [job] = world.job_ids()
    async with serve(world) as sim:
        config = config_for(sim, alerts=ARMED, allow_cancel=True)
        async with (
            poller_for(pg_url, sim, clock, config) as (_, first),
            poller_for(pg_url, sim, clock, config) as (store, second),
        ):
            await first.claim()
            await second.claim()
            assert (first.mine, second.mine) == (frozenset({job}), frozenset())
            await run_until(first, clock, START + 1000)
            assert await store.alerts(job) == []
            execute(pg_url, "UPDATE leases SET expires_at = 0")  # the first froze
            await second.claim()
            clock.set(START + 1400)
            await first.poll_once()  # its lease passed: refused, and it lets go of the job
            assert (cancel_calls(sim), first.mine) == (0, frozenset())
            await run_until(second, clock, START + 4 * 3600)
            alerts = await store.alerts(job)
            record = (await store.cancels())[job]
            ids = [d.id for d in await store.deliveries(job)]
        calls = cancel_calls(sim)
    assert calls == 1 and (record.state, record.attempts) == ("requested", 1)
    assert [(a.rule, a.episode) for a in alerts] == [("nonfinite", 1)]
    assert len(ids) == len(set(ids)) and f"{job}:alert.nonfinite:1:nan" in ids
