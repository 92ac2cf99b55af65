"""A job's status never waits on its metrics; the metrics catch up on later polls.

Also: one poll round, one code path (`run` and `poll_due` skip the same busy jobs).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, CommandHook, Config, HookConfig, PollConfig
from watcherd.hooks.payload import build_payload
from watcherd.store import Store
from watcherd.watch.poller import CATCH_UP_LIMIT, Poller

pytestmark = pytest.mark.anyio
JOB = "ft-lag"
SECOND = 1_000_000_000
HOOK = HookConfig(name="sink", action=CommandHook(argv=("true",)))
ROWS = [
    {"timestamp": step * SECOND, "train/global_step": step, "train/loss": 1.0 / step}
    for step in range(1, 31)
]
Handler = (
    Callable[[httpx.Request], httpx.Response]
    | Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]
)
#: What a failing metrics fetch answers: a 500, a malformed row, a body over the cap.
BROKEN: dict[str, httpx.Response] = {
    "500": httpx.Response(500, json={"error": {"message": "boom"}}),
    "malformed": httpx.Response(200, json={"metrics": [{"train/global_step": "x"}]}),
    "oversized": httpx.Response(200, json={"metrics": ROWS * 100}),
}


@asynccontextmanager
async def watching(tmp_path: Path, handler: Handler) -> AsyncIterator[tuple[Store, Poller]]:
    """A store and a poller (one attempt per request, 20 kB body cap) watching JOB."""
    config = Config(api=ApiConfig(base_url="http://sim.test"), poll=PollConfig(), hooks=(HOOK,))
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
    ):
        await store.sync_watched([(JOB, None)], time.time())
        api = ApiClient(
            http,
            base_url="http://sim.test",
            api_key="k",
            max_rate=0,
            max_attempts=1,
            max_body_bytes=20_000,  # the issue's `max_body_bytes: 20000`
        )
        poller = Poller(store, api, config)
        await poller.load_jobs()
        yield store, poller


class Service:
    """A job that has finished, and a metrics endpoint that fails until told otherwise."""

    def __init__(self, broken: httpx.Response) -> None:
        self.broken: httpx.Response | None = broken
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if not request.url.path.endswith("/metrics"):
            return httpx.Response(200, json={"id": JOB, "status": "completed"})
        if self.broken is not None:
            return self.broken
        start = int(request.url.params.get("global_step_from", "0"))
        return httpx.Response(
            200, json={"metrics": [r for r in ROWS if r["train/global_step"] >= start]}
        )


async def payload_of(store: Store) -> dict[str, Any]:
    """The hook payload of the job's one delivery, as the dispatcher would build it now."""
    (delivery,) = await store.deliveries(JOB)
    _, job, summary = await store.delivery_context(delivery.id)
    return build_payload(delivery, job, summary)


@pytest.mark.parametrize("failure", sorted(BROKEN))
async def test_a_finished_job_is_recorded_and_hooked_while_its_metrics_fail(
    tmp_path: Path, failure: str
) -> None:
    """Metrics failing (500, bad row, too big): transition and delivery at once, marked
    incomplete; once the metrics answer, the rows come and the job is complete."""
    service = Service(BROKEN[failure])
    async with watching(tmp_path, service) as (store, poller):
        await poller.poll_once()
        first_poll = len(service.requests)  # retrieve, metrics, and the log it did not carry
        transitions = [t.to_status for t in await store.transitions(JOB)]
        found = await store.job(JOB)
        assert found is not None and found[0].status == "completed"
        assert not found[0].metrics_complete and "metrics" in (found[0].last_error or "")
        assert (await payload_of(store))["metrics_complete"] is False
        assert [j.job_id for j in poller.live_jobs()] == [JOB] and not poller.settled()
        service.broken = None
        await poller.poll_once()
        assert await store.all_metrics(JOB) == ROWS
        found = await store.job(JOB)
        assert found is not None and found[0].metrics_complete and found[0].last_error is None
        assert (await payload_of(store))["metrics_complete"] is True
        assert poller.live_jobs() == [] and poller.settled()
        assert [t.to_status for t in await store.transitions(JOB)] == transitions == ["completed"]
        assert len(await store.deliveries(JOB)) == 1
    catch_up = service.requests[first_poll:]
    assert catch_up == [f"/v1/fine-tunes/{JOB}/metrics"]  # no status request: it is final


async def test_a_restart_keeps_catching_up(tmp_path: Path) -> None:
    """The owed metrics survive a restart: a new poller on the same store fetches them."""
    service = Service(BROKEN["500"])
    async with watching(tmp_path, service) as (_, poller):
        await poller.poll_once()
    service.broken = None
    async with watching(tmp_path, service) as (store, poller):
        assert [j.metrics_pending for j in poller.jobs.values()] == [True]
        await poller.poll_once()
        assert await store.all_metrics(JOB) == ROWS and poller.settled()


async def test_until_done_stops_waiting_for_metrics_that_keep_failing(tmp_path: Path) -> None:
    """After CATCH_UP_LIMIT failed fetches in a row the job counts as settled, named as
    incomplete (the daemon's `--until-done` exits 1 on it)."""
    async with watching(tmp_path, Service(BROKEN["oversized"])) as (_, poller):
        for _ in range(CATCH_UP_LIMIT):
            assert not poller.settled()
            await poller.poll_once()
        assert poller.settled() and poller.metrics_incomplete() == [JOB]


async def test_a_round_skips_a_job_already_being_polled(tmp_path: Path) -> None:
    """While `run` polls a job, `poll_due` does not poll it again: one path, one rule."""
    entered, release = anyio.Event(), anyio.Event()
    in_flight = [0, 0]  # now, most

    async def slow(request: httpx.Request) -> httpx.Response:
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        entered.set()
        await release.wait()
        in_flight[0] -= 1
        return httpx.Response(200, json={"id": JOB, "status": "queued"})

    async with watching(tmp_path, slow) as (_, poller), anyio.create_task_group() as tg:
        tg.start_soon(poller.run)
        await entered.wait()
        poller.jobs[JOB].next_at = 0.0
        with anyio.fail_after(5):
            await poller.poll_due()
        release.set()
        tg.cancel_scope.cancel()
    assert in_flight[1] == 1
