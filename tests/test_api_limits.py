"""Politeness: Retry-After, the host gate, the in-flight and rate caps, and backoff."""

from __future__ import annotations

import itertools
import math
import time
from email.utils import formatdate
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from tests.fakeclock import FakeTime
from tests.faultserver import FaultServer, Reply, json_reply
from watcherd.api.client import ApiClient
from watcherd.api.limits import HostGate, RateLimiter, retry_after
from watcherd.errors import RateLimitedError

pytestmark = pytest.mark.anyio

KEY = "sk-limits-SECRET"
JOB = {"id": "ft-abc", "status": "running"}


def client_for(http: httpx.AsyncClient, server: FaultServer, **kwargs: Any) -> ApiClient:
    """A client on the fault server with no rate cap unless given."""
    kwargs.setdefault("max_rate", 0)
    return ApiClient(http, base_url=server.url, api_key=KEY, **kwargs)


def limited(name: str, value: str) -> Reply:
    """A 429 carrying one Retry-After style header."""
    return json_reply({"error": {"message": "slow down"}}, 429, headers=((name, value),))


@pytest.mark.parametrize(
    ("name", "value", "wait"),
    [("retry-after", "1", 1.0), ("retry-after", "0.6", 0.6), ("retry-after-ms", "700", 0.7)],
)
async def test_no_request_before_relative_retry_after(
    http: httpx.AsyncClient, server: FaultServer, name: str, value: str, wait: float
) -> None:
    """After a 429 with Retry-After in seconds, fractional seconds or ms, the retry waits."""
    server.push(limited(name, value))
    await client_for(http, server).retrieve("ft-abc")
    first, second = server.seen
    assert first.at + wait <= second.at < first.at + wait + 0.5


async def test_no_request_before_http_date_retry_after(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """After a 429 with Retry-After as an HTTP date, the retry waits until that date."""
    resume = math.ceil(time.time()) + 1
    server.push(limited("retry-after", formatdate(resume, usegmt=True)))
    await client_for(http, server).retrieve("ft-abc")
    assert resume <= server.seen[1].at < resume + 0.5


async def test_gate_pauses_every_caller_to_the_host(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """One 429 with Retry-After holds back all other concurrent callers until it ends."""
    pauses: list[float] = []
    paused = anyio.Event()

    def on_pause(until: float) -> None:
        pauses.append(until)
        paused.set()

    client = client_for(http, server, gate=HostGate(on_pause=on_pause))
    server.push(limited("retry-after", "1"))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.retrieve, "ft-abc")
            await paused.wait()
            for _ in range(5):
                tg.start_soon(client.list_jobs)
    resume = client.gate.paused_until
    assert pauses == [resume] and len(server.seen) == 7
    assert all(seen.at >= resume for seen in server.seen[1:])


async def test_restored_pause_holds_requests(http: httpx.AsyncClient, server: FaultServer) -> None:
    """A pause restored with pause_until (e.g. from the database) delays the first request."""
    client = client_for(http, server)
    until = time.time() + 0.5
    client.gate.pause_until(until)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(client.list_jobs)
    assert len(server.seen) == 3 and all(seen.at >= until for seen in server.seen)


async def test_in_flight_never_above_the_cap(http: httpx.AsyncClient) -> None:
    """50 concurrent callers never have more than max_concurrency requests at the server."""
    async with FaultServer.running(json_reply(JOB, stall=0.03)) as server:
        client = client_for(http, server, max_concurrency=8)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(client.retrieve, "ft-abc")
    assert len(server.seen) == 50
    assert 4 <= server.max_in_flight <= 8


async def test_rate_cap_spaces_requests(http: httpx.AsyncClient, server: FaultServer) -> None:
    """With max_rate=20 the server sees concurrent callers' requests about 50 ms apart."""
    client = client_for(http, server, max_rate=20.0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(client.list_jobs)
    times = sorted(seen.at for seen in server.seen)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert times[-1] - times[0] >= 11 * 0.05 * 0.95
    assert min(gaps) >= 0.05 - 0.02


async def test_gate_raises_when_pause_outlasts_the_deadline() -> None:
    """Waiting on a gate paused past the caller's deadline raises RateLimitedError at once."""
    fake = FakeTime(1000.0)
    gate = HostGate(clock=fake.clock, sleep=fake.sleep)
    gate.pause_until(fake.now + 100)
    with pytest.raises(RateLimitedError) as info:
        await gate.wait(fake.now + 50)
    assert info.value.resume_at == 1100.0 and fake.sleeps == []
    await gate.wait(fake.now + 200)
    assert fake.sleeps == [100.0] and not gate.is_paused()


async def test_gate_pause_never_shortens_and_reports_extensions() -> None:
    """pause_until only ever extends the pause, and the callback sees each extension."""
    seen: list[float] = []
    gate = HostGate(on_pause=seen.append)
    assert gate.pause_until(2000.0) and not gate.pause_until(1500.0)
    assert gate.pause_until(2500.0) and not gate.pause_until(math.nan)
    assert gate.paused_until == 2500.0 and seen == [2000.0, 2500.0]


async def test_rate_limiter_reserves_slots_in_order() -> None:
    """Concurrent acquires at 10/s are given slots 0, 0.1, 0.2 s ahead; burst lets some through."""
    fake = FakeTime(1000.0)
    limiter = RateLimiter(10.0, clock=fake.clock, sleep=_record(fake))
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(limiter.acquire)
    assert sorted(fake.sleeps) == pytest.approx([0.1, 0.2])
    bursty = FakeTime(1000.0)
    limiter = RateLimiter(10.0, burst=3, clock=bursty.clock, sleep=_record(bursty))
    for _ in range(4):
        await limiter.acquire()
    assert bursty.sleeps == pytest.approx([0.1])


def _record(fake: FakeTime) -> Any:
    """A sleep that records the wait without moving the clock (all callers start together)."""

    async def sleep(seconds: float) -> None:
        fake.sleeps.append(seconds)

    return sleep


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "120"}, 1120.0),
        ({"retry-after": "3600"}, 4600.0),
        ({"retry-after": " 0.25 "}, 1000.25),
        ({"retry-after-ms": "1500"}, 1001.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 1000.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 1445412480.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "x", "retry-after": "2"}, 1002.0),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After as seconds, fractional seconds, ms or HTTP date; junk ignored; no cap."""
    assert retry_after(httpx.Headers(headers), 1000.0) == expected
