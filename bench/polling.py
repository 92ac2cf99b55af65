"""CPU per poll and memory: many running jobs polled for a fixed number of rounds.

Each round moves the simulator's manual clock 60 s on. Round 0 (the first sighting:
a full retrieve and every row so far, for each job) is a warm-up; the rounds after
it are measured. watcherd runs its real Poller, ApiClient and Store; the baseline
fetches the same URLs with bare httpx and parses the JSON, storing nothing.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.common import (
    CONCURRENCY,
    bare_client,
    bench_api,
    bench_config,
    median,
    peak_rss_mb,
    run_worker,
    watcherd_http,
)
from bench.simclient import SimProcess
from bench.table import Row
from watcherd.store import Store
from watcherd.store.inline import settle_switch_interval
from watcherd.watch.poller import Poller

ROUND = 60.0


def scenario(jobs: int) -> dict[str, Any]:
    """`jobs` SFT jobs that start training just before the clock's start and run long."""
    spec = {"steps": 10_000, "seconds_per_step": 10, "eval_steps": 20, "created": -60}
    return {"seed": 11, "jobs": [spec | {"pending": 5, "queue": 30, "count": jobs}]}


def _summary(cpu: list[float], logs: list[list[list[Any]]], jobs: int) -> dict[str, Any]:
    return {
        "cpu_per_round": cpu,
        "requests_per_round": [len(log) for log in logs],
        "cpu_per_poll_ms": median(cpu) / jobs * 1000.0,
        "peak_rss_mb": peak_rss_mb(),
    }


async def run_watcherd(sim: SimProcess, db: Path, rounds: int) -> dict[str, Any]:
    """Round 0 and `rounds` measured rounds with watcherd's Poller into `db`."""
    jobs = len(sim.job_ids)
    cpu: list[float] = []
    logs: list[list[list[Any]]] = []
    settle_switch_interval()  # as `watcherd run` does (this process runs watcherd alone)
    async with Store.open(db, writer=True) as store, watcherd_http() as http:
        await store.sync_watched([(j, None) for j in sim.job_ids], time.time())
        poller = Poller(store, bench_api(http, sim.base_url), bench_config(db))
        await poller.load_jobs()
        for r in range(rounds + 1):
            sim.set_time(sim.t0 + ROUND * r)
            start = time.process_time()
            await poller.poll_once()
            elapsed = time.process_time() - start
            logs.append(sim.log())
            if r:
                cpu.append(elapsed)
        assert poller.stats.errors == 0, "watcherd saw API errors"
    return _summary(cpu, logs[1:], jobs) if cpu else {}


async def _bare_round(http: httpx.AsyncClient, steps: dict[str, int | None]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job_id: str) -> None:
        params = {} if steps[job_id] is None else {"global_step_from": steps[job_id]}
        async with gate:
            reply = await http.get(f"/v1/fine-tunes/{job_id}/metrics", params=params)
        rows = json.loads(reply.content)["metrics"]
        if rows:
            steps[job_id] = max(int(row["train/global_step"]) for row in rows)

    listing = await http.get("/v1/fine-tunes")
    json.loads(listing.content)
    await asyncio.gather(*(one(j) for j in steps))


async def _baseline(sim: SimProcess, rounds: int) -> dict[str, Any]:
    steps: dict[str, int | None] = dict.fromkeys(sim.job_ids)
    cpu: list[float] = []
    logs: list[list[list[Any]]] = []
    async with bare_client(sim.base_url) as http:
        for r in range(rounds + 1):
            sim.set_time(sim.t0 + ROUND * r)
            start = time.process_time()
            await _bare_round(http, steps)
            elapsed = time.process_time() - start
            logs.append(sim.log())
            if r:
                cpu.append(elapsed)
    return _summary(cpu, logs[1:], len(steps))


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One system's rounds, in this (measured) process; the simulator in its own."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with SimProcess(scenario(params["jobs"]), folder, chunk=16) as sim:
            if params["system"] == "watcherd":
                return anyio.run(
                    run_watcherd, sim, folder / "w.db", params["rounds"], backend="asyncio"
                )
            return asyncio.run(_baseline(sim, params["rounds"]))


def figure(sizes: list[int], rounds: int, repeats: int) -> list[Row]:
    """CPU per poll at each size and peak RSS at the largest, against the bare loop."""
    rows: list[Row] = []
    for jobs in sizes:
        times = repeats if jobs <= 1_000 else 1  # at 10,000 jobs: one run, median of rounds
        runs: dict[str, list[dict[str, Any]]] = {"watcherd": [], "baseline": []}
        for _ in range(times):  # interleaved: a load that comes and goes hits both sides
            for system, done in runs.items():
                params = {"system": system, "jobs": jobs, "rounds": rounds}
                done.append(run_worker("poll", params, timeout=3600.0))
        ours = median([c / jobs * 1e3 for r in runs["watcherd"] for c in r["cpu_per_round"]])
        base = median([c / jobs * 1e3 for r in runs["baseline"] for c in r["cpu_per_round"]])
        rows.append(
            Row(
                f"CPU per poll, {jobs:,} jobs",
                ours,
                base,
                "<= 1.2x",
                ours <= 1.2 * base,
                "ms",
                {"runs": runs, "rounds": rounds, "repeats": times},
            )
        )
    rss = median([r["peak_rss_mb"] for r in runs["watcherd"]])
    base_rss = median([r["peak_rss_mb"] for r in runs["baseline"]])
    rows.append(
        Row(f"peak RSS, {sizes[-1]:,} jobs", rss, base_rss, "<= 1.0x", rss <= base_rss, "MB")
    )
    return rows
