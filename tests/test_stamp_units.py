"""Metric timestamps in seconds, milliseconds, microseconds or nanoseconds: read by magnitude."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.alertharness import SLOW_AFTER_EPOCH_1, START, world_of
from watcherd.alerts.episodes import Evaluation, Observation, evaluate
from watcherd.alerts.state import AlertState
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.config.alerting import AlertsConfig
from watcherd.model import MetricFilter, MetricRow
from watcherd.stamps import ns_per_unit, stamp_ns, stamp_seconds
from watcherd.store import PollRecord, Store
from watcherd.store.opening import open_store
from watcherd.watch.poller import Poller

#: Nanoseconds per unit, by the unit's name.
UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
T0_NS = 1_779_196_193_564_587_000  # 2026-05-19T13:09:53.564587Z
STEP_NS = 10 * 10**9  # a step every 10 s; an eval row every 5th step, 1 s after its train row
STEPS = 60


def history(per_unit: int) -> list[MetricRow]:
    """The job's whole history, stamped in the unit of `per_unit` nanoseconds."""
    rows: list[MetricRow] = []
    for step in range(1, STEPS + 1):
        at = T0_NS + step * STEP_NS
        rows.append({"timestamp": at // per_unit, "train/global_step": step, "train/loss": 1.0})
        if step % 5 == 0:
            late = (at + 10**9) // per_unit
            rows.append({"timestamp": late, "train/global_step": step, "eval/loss": 2.0})
    return rows


@pytest.mark.parametrize("unit", list(UNITS))
def test_the_unit_is_read_from_the_magnitude(unit: str) -> None:
    """Any instant from 1973 to 5138, written in any unit, reads back as its nanoseconds."""
    for ns in (100_000_001 * 10**9, T0_NS, 3_000_000_000 * 10**18 // 10**9):
        stamp = ns // UNITS[unit]
        assert ns_per_unit(stamp) == UNITS[unit]
        assert stamp_ns(stamp) == ns - ns % UNITS[unit]
        assert stamp_seconds(stamp) == pytest.approx(ns / 1e9)


@asynccontextmanager
async def watching(
    db: Path, handler: Callable[[httpx.Request], httpx.Response]
) -> AsyncIterator[tuple[Store, Poller]]:
    """A store at `db` and a poller watching ft-units on a server made of `handler`."""
    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0), poll=PollConfig())
    async with (
        Store.open(db, writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
    ):
        await store.sync_watched([("ft-units", None)], time.time())
        poller = Poller(store, ApiClient.from_config(http, config.api, "k"), config)
        await poller.load_jobs()
        yield store, poller


@pytest.mark.anyio
@pytest.mark.parametrize("unit", list(UNITS))
async def test_metrics_fetches_stay_incremental_in_every_unit(tmp_path: Path, unit: str) -> None:
    """Each poll downloads the new steps (and the last few seconds), never the history,
    before and after a restart; late eval rows are still all stored, once."""
    per_unit = UNITS[unit]
    truth = history(per_unit)
    now = [T0_NS]
    served: list[tuple[int, int]] = []  # (global_step_from, rows) per metrics request

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            start = int(request.url.params.get("global_step_from", "0"))
            rows = [
                r
                for r in truth
                if r["timestamp"] * per_unit <= now[0] and r["train/global_step"] >= start
            ]
            served.append((start, len(rows)))
            return httpx.Response(200, json={"metrics": rows})
        return httpx.Response(200, json={"id": "ft-units", "status": "running"})

    for half in range(2):  # the second half after a restart: the cursor read from the store
        async with watching(tmp_path / "w.db", handler) as (store, poller):
            for _ in range(STEPS // 6 + half):  # one more at the end: the last eval row
                now[0] += 3 * STEP_NS  # three new steps per poll
                await poller.poll_once()
            stored = await store.all_metrics("ft-units")
        if half == 0:
            after_restart = len(served)
    assert stored == truth
    assert max(rows for _, rows in served[1:]) <= 5, served
    assert served[after_restart][0] >= STEPS // 2 - 1, served


@pytest.mark.anyio
@pytest.mark.parametrize("unit", list(UNITS))
async def test_the_stored_cursor_reads_the_unit_too(store_target: str | Path, unit: str) -> None:
    """The cursor a restart starts from (both backends) is the newest step's, not the first."""
    rows = [r for r in history(UNITS[unit]) if r["train/global_step"] <= 20]
    async with open_store(store_target, writer=True) as store:
        await store.sync_watched([("ft-units", None)], 1.0)
        await store.record_poll(PollRecord("ft-units", 2.0, None, "running", rows))
        states = await store.job_states()
    assert states["ft-units"].cursor_step == 20


@pytest.mark.anyio
@pytest.mark.parametrize("unit", list(UNITS))
async def test_logged_at_bounds_read_rows_in_any_unit(store_target: str | Path, unit: str) -> None:
    """`metrics --logged-at-from/--to` (nanoseconds) keep the rows logged in between."""
    rows = history(UNITS[unit])
    low, high = T0_NS + 95 * STEP_NS // 10, T0_NS + 205 * STEP_NS // 10  # steps 10 to 20
    want = [r for r in rows if low <= stamp_ns(r["timestamp"]) <= high]
    async with open_store(store_target, writer=True) as store:
        await store.sync_watched([("ft-units", None)], 1.0)
        await store.record_poll(PollRecord("ft-units", 2.0, None, "running", rows))
        got = await store.metrics("ft-units", MetricFilter(logged_at_from=low, logged_at_to=high))
    assert got == want and len(want) == 14  # train rows 10-20, eval rows 10, 15, 20


def _evaluation(per_unit: int, until: float) -> Evaluation:
    """The rules' last word on the slow-after-epoch-1 job polled each minute, its rows'
    timestamps written in the unit of `per_unit` nanoseconds."""
    world, clock = world_of(SLOW_AFTER_EPOCH_1 | {"estimate": False})
    job_id, state = world.job_ids()[0], AlertState()
    while True:
        clock.advance(60)
        rows = [
            r | {"timestamp": r["timestamp"] // per_unit}
            for r in world.metrics(job_id, MetricFilter(), clock())
        ]
        obs = Observation(clock(), "running", world.job_object(job_id), rows, True)
        result = evaluate(AlertsConfig(), state, obs)
        state = result.state
        if clock() >= until:
            return result


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
@pytest.mark.parametrize(("at", "source"), [(600, "step_rate"), (1300, "first_epoch")])
def test_the_eta_is_the_same_whatever_the_unit(unit: str, at: float, source: str) -> None:
    """Step rate and first-epoch ETAs from rows in s, ms or us match those from ns rows."""
    want = _evaluation(1, START + at)
    got = _evaluation(UNITS[unit], START + at)
    assert want.eta is not None and got.eta is not None
    assert (got.eta.source, want.eta.source) == (source, source)
    assert got.eta.at == pytest.approx(want.eta.at, abs=5)
    assert len(got.state.step_secs) == len(want.state.step_secs)
    mean = sum(want.state.step_secs) / len(want.state.step_secs)  # whole seconds: 1 s off each
    assert sum(got.state.step_secs) / len(got.state.step_secs) == pytest.approx(mean, abs=0.2)
