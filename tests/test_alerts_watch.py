"""Alerts through the real poller and store: episodes, deliveries, restarts and cancels."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.alertharness import LONG_QUEUE, START, SUDDEN_NAN, world_of
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, CommandHook, Config, HookConfig, PollConfig
from watcherd.config.alerting import AlertsConfig
from watcherd.hooks import build_payload
from watcherd.sim import ManualClock, SimServer, serve
from watcherd.store import Store
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
    tmp_path: Path, sim: SimServer, clock: ManualClock, config: Config
) -> AsyncIterator[tuple[Store, Poller]]:
    """A store in tmp_path and a poller watching every sim job, on the sim's clock."""
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
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
    tmp_path: Path,
) -> None:
    """A NaN job: one episode, opened and resolved for subscribers; the default hook: status."""
    world, clock = world_of(SUDDEN_NAN)
    job = world.job_ids()[0]
    async with serve(world) as sim, poller_for(tmp_path, sim, clock, config_for(sim)) as (st, p):
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


async def test_the_payload_carries_the_alert_and_the_eta(tmp_path: Path) -> None:
    """The opening's payload: type alert.nonfinite, rule, step, key, NaN as null, the ETA."""
    world, clock = world_of(SUDDEN_NAN | {"estimate": False})
    job = world.job_ids()[0]
    async with serve(world) as sim, poller_for(tmp_path, sim, clock, config_for(sim)) as (st, p):
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
    assert alert["step"] >= 120
    assert payload["eta"]["source"] in ("step_rate", "first_epoch")


async def test_a_restart_and_a_re_poll_never_repeat_an_alert(tmp_path: Path) -> None:
    """Stopping mid-episode, starting again from the database and polling twice adds nothing."""
    world, clock = world_of(SUDDEN_NAN)
    job = world.job_ids()[0]
    async with serve(world) as sim:
        config = config_for(sim)
        async with poller_for(tmp_path, sim, clock, config) as (store, poller):
            await run_until(poller, clock, START + 1400)
            before = sorted(d.id for d in await store.deliveries(job))
        async with poller_for(tmp_path, sim, clock, config) as (store, poller):
            await poller.poll_once()
            await poller.poll_once()
            after = sorted(d.id for d in await store.deliveries(job))
            await run_until(poller, clock, START + 4 * 3600)
            alerts = await store.alerts(job)
    assert before == after == [f"{job}:alert.nonfinite:1:all", f"{job}:alert.nonfinite:1:nan"]
    assert [(a.rule, a.episode) for a in alerts] == [("nonfinite", 1)]


async def test_an_armed_cancel_is_called_once_and_stops_the_job(tmp_path: Path) -> None:
    """Armed cancel: one POST, cancel_requested then cancelled, stopped early, who and why."""
    world, clock = world_of(SUDDEN_NAN | {"final": "completed"})
    job = world.job_ids()[0]
    async with serve(world) as sim:
        config = config_for(sim, alerts=ARMED, allow_cancel=True)
        async with poller_for(tmp_path, sim, clock, config) as (store, poller):
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


async def test_cancel_is_not_called_again_after_a_crash_past_the_call(tmp_path: Path) -> None:
    """On restart an intent whose call landed is settled without a call; an unmade one is made."""
    world, clock = world_of(SUDDEN_NAN | {"final": "completed"}, LONG_QUEUE)
    nan_job, queued = world.job_ids()
    async with serve(world) as sim:
        config = config_for(sim, alerts=ARMED, allow_cancel=True)
        async with poller_for(tmp_path, sim, clock, config) as (store, poller):
            await run_until(poller, clock, START + 1400)
        calls = cancel_calls(sim)
        db = tmp_path / "w.db"
        _forge_intent(db, nan_job, attempts=1)  # as if killed right after the call was made
        _forge_intent(db, queued, attempts=0)  # as if killed before the call
        async with poller_for(tmp_path, sim, clock, config) as (store, poller):
            await poller.poll_once()
            records = await store.cancels()
        calls = cancel_calls(sim) - calls
    assert calls == 1  # the queued job's, made now; none for the NaN job
    assert records[nan_job].state == "requested"
    assert records[queued].state == "requested"


def _forge_intent(db: Path, job_id: str, *, attempts: int) -> None:
    """Put a cancel back to `intent`, the state a kill between decision and outcome leaves."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO cancels (job_id, requested_by, rule, reason, decided_at, cancel_state,"
            " attempts)"
            " VALUES (?, 'watcherd', 'nonfinite', 'test', 0, 'intent', ?)"
            " ON CONFLICT(job_id) DO UPDATE SET cancel_state = 'intent',"
            " attempts = excluded.attempts",
            (job_id, attempts),
        )
