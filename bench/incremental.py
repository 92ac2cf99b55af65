"""Incremental fetch: one job polled every 60 s while it runs, then once finished.

Counts the metric rows watcherd's client received against the rows it stored; with
inclusive `global_step_from`, each poll may repeat one boundary row.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import API_KEY, CONCURRENCY, bench_config, run_worker, watcherd_http
from bench.simclient import SimProcess
from bench.table import Row
from watcherd.api.client import ApiClient, OnBatch
from watcherd.model import MetricFilter, MetricRecord
from watcherd.store import Store
from watcherd.watch.poller import Poller


class CountingApi(ApiClient):
    """watcherd's client, counting the metric rows each response carried."""

    transferred = 0

    async def metric_records(
        self, job_id: str, flt: MetricFilter | None = None, on_batch: OnBatch | None = None
    ) -> list[MetricRecord]:
        """The parent's fetch (the poller's), counted, batches handed on included."""

        async def counted(batch: list[MetricRecord]) -> None:
            self.transferred += len(batch)
            assert on_batch is not None
            await on_batch(batch)

        rows = await super().metric_records(job_id, flt, None if on_batch is None else counted)
        self.transferred += len(rows)
        return rows


def scenario(steps: int) -> dict[str, Any]:
    """One SFT job of `steps` steps starting at the clock's start."""
    job = {"steps": steps, "seconds_per_step": 10, "eval_steps": 50, "created": 0}
    return {"seed": 9, "jobs": [job | {"pending": 5, "queue": 30}]}


async def _run(sim: SimProcess, db: Path) -> dict[str, Any]:
    async with Store.open(db, writer=True) as store, watcherd_http() as http:
        api = CountingApi(
            http, base_url=sim.base_url, api_key=API_KEY, max_concurrency=CONCURRENCY, max_rate=1e9
        )
        await store.sync_watched([(sim.job_ids[0], None)], time.time())
        poller = Poller(store, api, bench_config(db))
        await poller.load_jobs()
        polls, now = 0, sim.t0
        while not poller.settled():
            sim.set_time(now)
            await poller.poll_once()
            polls, now = polls + 1, now + 60.0
    with sqlite3.connect(db) as conn:
        stored = int(conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0])
    return {"transferred": api.transferred, "stored": stored, "polls": polls}


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """Poll the job to its end; return the row counts."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimProcess(scenario(params["steps"]), Path(tmp)) as sim,
    ):
        return anyio.run(_run, sim, Path(tmp) / "inc.db", backend="asyncio")


def figure(steps: int) -> list[Row]:
    """Rows transferred over (stored + one boundary row per poll)."""
    got = run_worker("incremental", {"steps": steps})
    allowed = 1.05 * got["stored"] + got["polls"]
    return [
        Row(
            f"incremental fetch, {steps:,} steps",
            got["transferred"],
            allowed,
            "<= 1.05x stored + 1/poll",
            got["transferred"] <= allowed,
            "rows",
            got,
        )
    ]
