"""When the poller fetches a job's event log: the request budget of the events hook point."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.store import Store
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio
JOB = "ft-events"
LOG = [
    {"created_at": "2026-05-19T13:00:00Z", "type": "job_pending", "message": "created"},
    {"created_at": "2026-05-19T13:05:00Z", "type": "JOB_START", "message": "started"},
]
DONE = {"created_at": "2026-05-19T16:00:00Z", "type": "job_complete", "message": "done"}


class Clock:
    """A clock the test moves by hand (for both wall and monotonic time)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on."""
        self.now += seconds


class Service:
    """One job whose status the test sets; counts requests by endpoint."""

    def __init__(self) -> None:
        self.status = "pending"
        self.embedded: list[dict[str, Any]] | None = None  # `events` in the job object
        self.log = list(LOG)
        self.requests: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        kind = kind if kind in ("metrics", "events") else "retrieve"
        self.requests[kind] += 1
        if kind == "metrics":
            return httpx.Response(200, json={"metrics": []})
        if kind == "events":
            return httpx.Response(200, json={"data": self.log})
        job: dict[str, Any] = {"id": JOB, "status": self.status, "total_price": 7}
        if self.embedded is not None:
            job["events"] = self.embedded
        return httpx.Response(200, json=job)


async def test_events_follow_training_and_come_free_with_the_last_retrieve(
    tmp_path: Path,
) -> None:
    """None while queued; one at the start of training, one per events_interval, none at the end."""
    clock = Clock()
    service = Service()
    poll = PollConfig(metrics_interval=300.0, events_interval=3600.0)
    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0), poll=poll)
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
    ):
        await store.sync_watched([(JOB, None)], time.time())
        api = ApiClient.from_config(http, config.api, "k")
        poller = Poller(store, api, config, monotonic=clock, wall=clock)
        await poller.load_jobs()

        async def look(status: str, minutes: float) -> int:
            service.status = status
            clock.advance(minutes * 60)
            await poller.poll_once()
            return service.requests["events"]

        assert [await look("pending", 0), await look("queued", 10)] == [0, 0]
        assert await look("running", 10) == 1
        assert [await look("running", 20) for _ in range(3)] == [1, 1, 2]
        assert await look("compressing", 30) == 2
        service.log.append(DONE)
        service.embedded = service.log
        assert await look("completed", 10) == 2
        assert await store.events(JOB) == [*LOG, DONE]
        (job,) = await store.overview()
    assert job.reason == "done" and job.total_price == 7


async def test_a_terminal_object_without_events_fetches_them(tmp_path: Path) -> None:
    """A job found already failed, whose object carries no log, gets its log fetched once."""
    service = Service()
    service.status = "error"
    service.log.append({"created_at": "x", "type": "job_error", "message": "OOM", "level": "error"})
    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0))
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(service)) as http,
    ):
        await store.sync_watched([(JOB, None)], time.time())
        poller = Poller(store, ApiClient.from_config(http, config.api, "k"), config)
        await poller.load_jobs()
        await poller.poll_once()
        (job,) = await store.overview()
    assert service.requests["events"] == 1 and job.reason == "OOM"


async def test_a_failed_log_fetch_holds_no_status_back(tmp_path: Path) -> None:
    """The log answering 500 as training starts: the status is recorded; the next poll gets it."""
    clock = Clock()
    service = Service()
    service.status = "running"
    healthy = Service.__call__

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events") and service.requests["events"] == 0:
            service.requests["events"] += 1
            return httpx.Response(500, json={"error": {"message": "boom"}})
        return healthy(service, request)

    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0))
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(flaky)) as http,
    ):
        await store.sync_watched([(JOB, None)], time.time())
        api = ApiClient(http, base_url="http://sim.test", api_key="k", max_rate=0, max_attempts=1)
        poller = Poller(store, api, config, monotonic=clock, wall=clock)
        await poller.load_jobs()
        await poller.poll_once()
        assert [t.to_status for t in await store.transitions(JOB)] == ["running"]
        assert await store.events(JOB) == []
        clock.advance(60)
        await poller.poll_once()
        assert await store.events(JOB) == LOG
    assert service.requests["events"] == 2
