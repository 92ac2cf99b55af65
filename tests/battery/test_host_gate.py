"""The host-gate battery: one 429 with Retry-After holds back every job's requests."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import httpx
import pytest

from tests.battery.sizes import report, sized
from tests.faultserver import FaultServer, json_reply
from watcherd.api.client import ApiClient

pytestmark = pytest.mark.anyio

KEY = "sk-gate-SECRET"
JOBS = [f"ft-gate{i}" for i in range(8)]
NO_ROWS = json_reply({"metrics": []})


class StepClock:
    """Virtual time that moves only when the test advances it; sleepers wake as it passes."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self._moved = anyio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Return once virtual time has moved `seconds` on."""
        deadline = self.now + seconds
        await anyio.lowlevel.checkpoint()
        while self.now < deadline:
            await self._moved.wait()

    async def advance(self, seconds: float, step: float = 0.5) -> None:
        """Move time on in steps, letting every woken task run between steps."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            moved, self._moved = self._moved, anyio.Event()
            moved.set()
            await anyio.sleep(0.005)


def client(http: httpx.AsyncClient, server: FaultServer, **kwargs: object) -> ApiClient:
    """A client patient enough to wait out the pause rather than give up."""
    return ApiClient(
        http,
        base_url=server.url,
        api_key=KEY,
        max_rate=0,
        max_concurrency=4,
        max_attempts=3,
        max_wait=120.0,
        **kwargs,  # type: ignore[arg-type]
    )


async def poll_all(api: ApiClient, first_done: anyio.Event) -> None:
    """The first job meets the 429; once it has, every other job polls too."""

    async def one(job_id: str) -> None:
        await api.metrics(job_id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, JOBS[0])
        await first_done.wait()
        for job_id in JOBS[1:]:
            tg.start_soon(one, job_id)


def _retry(seconds: int) -> tuple[tuple[str, str], ...]:
    return (("content-type", "application/json"), ("retry-after", str(seconds)))


@pytest.mark.timeout(30)
async def test_one_429_holds_every_job_for_30_virtual_seconds() -> None:
    """Retry-After: 30 on one job's request: no request from any job for 30 s (virtual clock)."""
    clock = StepClock()
    sent: list[float] = []
    async with (
        FaultServer.running(NO_ROWS) as server,
        httpx.AsyncClient(event_hooks={"request": [_record(sent, clock)]}) as http,
    ):
        server.push(json_reply({"error": {"message": "slow"}}, status=429, headers=_retry(30)))
        api = client(http, server, clock=clock, sleep=clock.sleep)
        first_done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_first, api, first_done)
            tg.start_soon(poll_all, api, first_done)
            await first_done.wait()
            await clock.advance(40.0)
            tg.cancel_scope.cancel()
    start = sent[0]
    later = [t - start for t in sent[1:]]
    report("host gate (virtual)", retry_after=30, requests=len(sent), first_after_s=min(later))
    assert len(sent) == len(JOBS) + 1
    assert min(later) >= 30.0


def _record(sent: list[float], clock: Callable[[], float]) -> Callable[[httpx.Request], object]:
    async def hook(request: httpx.Request) -> None:
        sent.append(clock())

    return hook


async def _watch_first(api: ApiClient, done: anyio.Event) -> None:
    """Set `done` once the gate is paused (the first job read its 429)."""
    while not api.gate.paused_until:  # noqa: ASYNC110 (the gate has no event to wait on)
        await anyio.sleep(0.001)
    done.set()


@pytest.mark.timeout(sized(30, 90))
async def test_one_429_holds_every_job_over_loopback() -> None:
    """Retry-After on one request, real clock and loopback: no job's request arrives before it."""
    wait = sized(3, 30)
    async with FaultServer.running(NO_ROWS) as server, httpx.AsyncClient() as http:
        server.push(json_reply({"error": {"message": "slow"}}, status=429, headers=_retry(wait)))
        api = client(http, server)
        first_done = anyio.Event()
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_first, api, first_done)
            await poll_all(api, first_done)
            tg.cancel_scope.cancel()
        took = time.monotonic() - started
    arrivals = [s.at - server.seen[0].at for s in server.seen[1:]]
    report(
        "host gate (loopback)",
        retry_after=wait,
        requests=len(server.seen),
        first_after_s=round(min(arrivals), 3),
        took_s=round(took, 2),
    )
    assert len(server.seen) == len(JOBS) + 1
    assert min(arrivals) >= wait
