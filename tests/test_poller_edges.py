"""The poller against servers that behave at the edges of the contract."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.store import Store
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio
SECOND = 1_000_000_000
#: Log time starts in 2026: stamps near 1970 in nanoseconds would read as seconds (`stamps`).
T0 = 1_779_196_193_564_587_000


@asynccontextmanager
async def watching(
    tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response], job_id: str
) -> AsyncIterator[tuple[Store, Poller]]:
    """A real store and poller watching `job_id` on a server made of `handler`."""
    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0), poll=PollConfig())
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
    ):
        await store.sync_watched([(job_id, None)], time.time())
        poller = Poller(store, ApiClient.from_config(http, config.api, "k"), config)
        await poller.load_jobs()
        yield store, poller


def history() -> list[dict[str, Any]]:
    """Fast steps (0.3 s) and eval rows logged 1 s after their step, after later train rows."""
    rows: list[dict[str, Any]] = []
    for step in range(1, 41):
        stamp = T0 + step * 3 * SECOND // 10
        rows.append({"timestamp": stamp, "train/global_step": step, "train/loss": 1.0 / step})
        if step % 5 == 0:
            rows.append({"timestamp": stamp + SECOND, "train/global_step": step, "eval/loss": 2.0})
    return sorted(rows, key=lambda r: r["timestamp"])


async def test_eval_rows_logged_after_later_train_rows_are_not_skipped(tmp_path: Path) -> None:
    """Polling every 0.6 s of log time, every row of the history ends up stored once."""
    truth = history()
    now = [T0]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            start = int(request.url.params.get("global_step_from", "0"))
            rows = [
                r for r in truth if r["timestamp"] <= now[0] and r["train/global_step"] >= start
            ]
            return httpx.Response(200, json={"metrics": rows})
        return httpx.Response(200, json={"id": "ft-late", "status": "running"})

    async with watching(tmp_path, handler, "ft-late") as (store, poller):
        while now[0] <= truth[-1]["timestamp"]:
            now[0] += 6 * SECOND // 10
            await poller.poll_once()
        stored = await store.all_metrics("ft-late")
    assert stored == truth


async def test_a_metrics_404_for_a_listed_job_is_no_rows_not_a_missing_job(
    tmp_path: Path,
) -> None:
    """A job that exists but whose metrics answer 404 keeps its status and turns terminal."""
    status = ["running"]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            return httpx.Response(404, json={"error": {"message": "no metrics", "type": "x"}})
        return httpx.Response(200, json={"id": "ft-nometrics", "status": status[0]})

    async with watching(tmp_path, handler, "ft-nometrics") as (store, poller):
        for _ in range(4):
            await poller.poll_once()
        status[0] = "completed"
        await poller.poll_once()
        transitions = [t.to_status for t in await store.transitions("ft-nometrics")]
    assert transitions == ["running", "completed"]
