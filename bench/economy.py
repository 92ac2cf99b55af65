"""Request economy: a simulated day of 100 jobs, in virtual time.

Both sides run against a simulator whose clock they move (so no request waits for
the wall clock and every figure is in sim seconds). watcherd runs its real Poller,
Store and hook Dispatcher with the sim clock injected as their clocks, default poll
timings (60 s / 10 s) and a command hook; the loop only jumps the clock to the next
due time, which is all `Poller.run` would sleep for. The baseline calls retrieve and
list_metrics for every live job every 60 s. Requests come from the simulator's log.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import bare_client, bench_api, bench_config, median, run_worker, watcherd_http
from bench.simclient import SimProcess
from bench.table import Row
from watcherd.config import CommandHook, HookConfig
from watcherd.model import is_terminal
from watcherd.store import Store
from watcherd.watch.dispatcher import Dispatcher
from watcherd.watch.poller import Poller

TICK = 60.0


def _job(rng: random.Random, day: float) -> dict[str, Any]:
    created = rng.uniform(0, day * 0.6)
    queue = 60 * math.exp(rng.uniform(0, math.log(180)))  # 1 min .. 3 h
    train = 900 * math.exp(rng.uniform(0, math.log(32)))  # 15 min .. 8 h
    train = max(600.0, min(train, day * 0.97 - created - queue - 1500))
    per_step = rng.uniform(5, 30)
    steps = max(20, int(train / per_step))
    job: dict[str, Any] = {
        "created": created,
        "pending": rng.uniform(5, 60),
        "queue": queue,
        "steps": steps,
    }
    job |= {"seconds_per_step": per_step, "eval_steps": max(1, steps // 10)}
    job |= {"compress": rng.uniform(0, 600), "upload": rng.uniform(60, 600)}
    roll = rng.random()
    if roll < 0.08:
        job |= {"final": "error", "error_at_step": steps // 2}
    elif roll < 0.12:
        job |= {"final": "cancelled", "cancel_at": job["pending"] + queue + train / 2}
    elif roll < 0.15:
        job |= {"final": "user_error"}
    return job


def scenario(jobs: int, day: float) -> dict[str, Any]:
    """`jobs` jobs created over the first 60 % of `day` sim seconds, all done by its end."""
    rng = random.Random(2024)
    return {"seed": 17, "jobs": [_job(rng, day) for _ in range(jobs)]}


def _lives(sim: SimProcess) -> dict[str, tuple[float, float]]:
    return {j: (c, f) for j, (c, f, _) in sim.head["lives"].items()}


async def _watcherd(sim: SimProcess, db: Path) -> dict[str, Any]:
    lives, clock = _lives(sim), [sim.t0]
    hook = HookConfig(name="bench", action=CommandHook(argv=("true",)))
    config = bench_config(db, hooks=[hook])
    async with Store.open(db, writer=True) as store, watcherd_http() as http:

        def now() -> float:
            return clock[0]

        poller = Poller(store, bench_api(http, sim.base_url), config, wall=now, monotonic=now)
        dispatcher = Dispatcher(store, http, config, wall=now)
        async with anyio.create_task_group() as tg:
            watched: set[str] = set()
            while True:
                new = [j for j, (c, _) in lives.items() if c <= now() and j not in watched]
                if new:
                    watched.update(new)
                    await store.sync_watched([(j, None) for j in sorted(watched)], now())
                    await poller.load_jobs()
                sim.set_time(now())
                await poller.poll_due()
                if await dispatcher.start_due(tg):
                    await _started(store, now())
                pending = [c for j, (c, _) in lives.items() if j not in watched]
                if not pending and poller.settled():
                    break
                due = min([j.next_at for j in poller.live_jobs()] + pending, default=now())
                clock[0] = max(due, now() + 0.5)
            await dispatcher.wait_idle()
            tg.cancel_scope.cancel()
    with sqlite3.connect(db) as conn:
        started = dict(conn.execute("SELECT job_id, started_at FROM deliveries").fetchall())
    latency = [started[j] - f for j, (_, f) in lives.items() if j in started]
    log = sim.log()
    return {"requests": len(log), "latencies": latency, "hooks": len(started)} | _kinds(log)


def _kinds(log: list[list[Any]]) -> dict[str, int]:
    """Requests by endpoint: list, retrieve, metrics, events."""
    paths = [str(r[2]).rstrip("/") for r in log]
    metrics = sum(p.endswith("/metrics") for p in paths)
    events = sum(p.endswith("/events") for p in paths)
    listing = sum(p == "/v1/fine-tunes" for p in paths)
    retrieve = len(paths) - metrics - events - listing
    return {"list": listing, "metrics": metrics, "events": events, "retrieve": retrieve}


async def _started(store: Store, now: float) -> None:
    """Hold the clock until the hooks just queued have started (state `running`)."""
    with anyio.fail_after(30):
        while await store.due_deliveries(now, 100):  # noqa: ASYNC110 - polls the database
            await anyio.sleep(0.002)


async def _baseline(sim: SimProcess) -> dict[str, Any]:
    lives, done, steps = _lives(sim), dict[str, float](), dict[str, int]()
    gate = asyncio.Semaphore(8)
    async with bare_client(sim.base_url) as http:

        async def poll(job_id: str, now: float) -> None:
            async with gate:
                job = (await http.get(f"/v1/fine-tunes/{job_id}")).json()
                params = {"global_step_from": steps[job_id]} if job_id in steps else {}
                rows = (await http.get(f"/v1/fine-tunes/{job_id}/metrics", params=params)).json()
            if rows["metrics"]:
                steps[job_id] = max(int(r["train/global_step"]) for r in rows["metrics"])
            if is_terminal(job["status"]):
                done[job_id] = now

        now = sim.t0
        while len(done) < len(lives):
            sim.set_time(now)
            live = [j for j, (c, _) in lives.items() if c <= now and j not in done]
            await asyncio.gather(*(poll(j, now) for j in live))
            now += TICK
    latency = [done[j] - f for j, (_, f) in lives.items()]
    end = max(f for _, f in lives.values())
    all_day = sum(2 * math.ceil((end - c) / TICK) for c, _ in lives.values())
    log = sim.log()
    return {"requests": len(log), "latencies": latency, "all_day_requests": all_day} | _kinds(log)


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One side's simulated day."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with SimProcess(scenario(params["jobs"], params["day"]), folder) as sim:
            start = time.perf_counter()
            if params["system"] == "watcherd":
                got = anyio.run(_watcherd, sim, folder / "day.db", backend="asyncio")
            else:
                got = asyncio.run(_baseline(sim))
            return got | {"wall": time.perf_counter() - start}


def figure(jobs: int, day: float) -> list[Row]:
    """Requests against the baseline's, and the median terminal-to-hook latency."""
    runs = {
        s: run_worker("economy", {"system": s, "jobs": jobs, "day": day})
        for s in ("watcherd", "baseline")
    }
    ours, base = runs["watcherd"], runs["baseline"]
    lat, base_lat = median(ours["latencies"]), median(base["latencies"])
    detail = {s: {k: v for k, v in r.items() if k != "latencies"} for s, r in runs.items()}
    return [
        Row(f"requests, {jobs} jobs / {day / 3600:g} h", ours["requests"], base["requests"],
            "<= 0.2x", ours["requests"] <= 0.2 * base["requests"], "req", detail),
        Row("terminal -> hook start (median)", lat, base_lat, "<= 15 s", lat <= 15.0, "sim s"),
    ]  # fmt: skip
