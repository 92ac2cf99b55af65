"""Politeness: Retry-After, the host gate, the in-flight and rate caps, and backoff."""

from __future__ import annotations

import functools
import math
import time
from email.utils import formatdate
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from structlog.testing import capture_logs

from tests.fakeclock import FakeTime
from tests.fakerng import Edge
from tests.faultserver import FaultServer, Reply, json_reply
from watcherd.api.client import ApiClient
from watcherd.api.limits import HostGate, RateLimiter, Slots
from watcherd.api.transport import Exchange, build, request_headers
from watcherd.errors import RateLimitedError, StoreError

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


@pytest.mark.parametrize(
    ("value", "waits"),
    [
        ("0", [0.5, 1.0, 2.0]),  # at once, four times in a row, before
        (formatdate(1_000.0, usegmt=True), [0.5, 1.0, 2.0]),  # long past
        ("1.5", [1.5, 1.5, 2.0]),  # honoured where it is longer than the backoff
    ],
)
async def test_a_429_waits_at_least_the_backoff(
    http: httpx.AsyncClient, server: FaultServer, value: str, waits: list[float]
) -> None:
    """A 429 whose Retry-After is 0 or past waits the full-jitter backoff (here its top);
    a longer Retry-After still wins."""
    fake = FakeTime()
    client = client_for(http, server, clock=fake.clock, sleep=fake.sleep, rng=Edge(top=True))
    server.push(*[limited("retry-after", value)] * 3)
    await client.retrieve("ft-abc")
    assert len(server.seen) == 4 and fake.sleeps == pytest.approx(waits)


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

    async def save(until: float) -> None:
        pauses.append(until)
        paused.set()

    client = client_for(http, server, gate=HostGate(save=save))
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


async def test_a_pause_is_saved_before_the_next_request(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A slow save of a 0.1 s pause: the retry goes out only once the save has finished."""
    saved_at: list[float] = []

    async def slow_save(until: float) -> None:
        await anyio.sleep(0.4)
        saved_at.append(time.time())

    client = client_for(http, server, gate=HostGate(save=slow_save))
    server.push(limited("retry-after", "0.1"))
    with anyio.fail_after(5):
        await client.retrieve("ft-abc")
    assert len(saved_at) == 1 and len(server.seen) == 2
    assert server.seen[1].at >= saved_at[0]


async def test_adopting_a_stored_pause_caps_it_and_follows_a_clear() -> None:
    """adopt cuts a stored pause to the cap (saving the cut) and lowers to a cleared one."""
    fake = FakeTime(1000.0)
    saved: list[float] = []

    async def save(until: float) -> None:
        saved.append(until)

    gate = HostGate(clock=fake.clock, save=save)
    assert await gate.adopt(1e12, cap=3600.0) == 4600.0 and saved == [4600.0]
    assert await gate.adopt(None, cap=3600.0) == 0.0 and not gate.is_paused()
    assert await gate.adopt(1500.0, cap=60.0) == 1060.0 and saved == [4600.0, 1060.0]


async def test_adopt_keeps_an_extension_still_waiting_for_its_save() -> None:
    """A pause extended while adopt waits for the save lock survives adopt and is saved."""
    fake = FakeTime(1000.0)
    saved: list[float] = []
    release = anyio.Event()

    async def save(until: float) -> None:
        if not saved:
            await release.wait()
        saved.append(until)

    gate = HostGate(clock=fake.clock, save=save)
    async with anyio.create_task_group() as tg:
        tg.start_soon(gate.extend, 1050.0)  # its save holds the lock
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(functools.partial(gate.adopt, None, cap=3600.0))
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(gate.extend, 1080.0)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert gate.paused_until == 1080.0 and saved == [1050.0, 1080.0]


async def test_a_failed_save_is_logged_and_retried_by_flush() -> None:
    """A save that raises a WatcherdError leaves the pause in force and flush saves it later."""
    fake = FakeTime(1000.0)
    attempts: list[float] = []

    async def flaky(until: float) -> None:
        attempts.append(until)
        if len(attempts) == 1:
            raise StoreError("database is locked")

    gate = HostGate(clock=fake.clock, save=flaky)
    with capture_logs() as logs:
        assert await gate.extend(1010.0)
    assert gate.is_paused() and [e["event"] for e in logs] == ["api.pause_not_saved"]
    await gate.flush()
    await gate.flush()
    assert attempts == [1010.0, 1010.0]


async def test_drain_reads_the_open_request_and_sends_no_new_one(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """drain (a graceful stop) waits for the request on the wire, so its 429's pause is
    saved, and no request starts after it."""
    saved: list[float] = []

    async def save(until: float) -> None:
        saved.append(until)

    client = client_for(http, server, gate=HostGate(save=save))
    server.push(
        json_reply(
            {"error": {"message": "slow"}}, 429, headers=(("retry-after", "0.2"),), stall=0.3
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.retrieve, "ft-abc")
        while not server.seen:  # noqa: ASYNC110 (the server has no event to wait on)
            await anyio.sleep(0.01)
        with anyio.fail_after(5):
            await client.gate.drain()
        assert len(saved) == 1
        tg.start_soon(client.list_jobs)
        await anyio.sleep(0.4)  # the retry's 0.2 s, and then some: nothing may go out
        tg.cancel_scope.cancel()
    assert len(server.seen) == 1


async def test_restored_pause_holds_requests(http: httpx.AsyncClient, server: FaultServer) -> None:
    """A pause adopted from the database delays the first request."""
    client = client_for(http, server)
    until = time.time() + 0.5
    await client.gate.adopt(until, cap=60.0)
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
    """With max_rate=20, 12 concurrent callers: the k-th request reaches the server no sooner
    than k x 50 ms after the callers started (a late request only comes later: load-proof)."""
    client = client_for(http, server, max_rate=20.0)
    started = time.time()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(client.list_jobs)
    times = sorted(seen.at for seen in server.seen)
    assert len(times) == 12
    assert all(at - started >= k * 0.05 - 0.005 for k, at in enumerate(times)), [
        round(at - started, 3) for at in times
    ]


async def test_gate_raises_when_pause_outlasts_the_deadline() -> None:
    """Waiting on a gate paused past the caller's deadline raises RateLimitedError at once."""
    fake = FakeTime(1000.0)
    gate = HostGate(clock=fake.clock, sleep=fake.sleep)
    await gate.extend(fake.now + 100)
    with pytest.raises(RateLimitedError) as info:
        await gate.wait(fake.now + 50)
    assert info.value.resume_at == 1100.0 and fake.sleeps == []
    await gate.wait(fake.now + 200)
    assert fake.sleeps == [100.0] and not gate.is_paused()


async def test_gate_pause_never_shortens_and_saves_each_extension() -> None:
    """extend only ever lengthens the pause, and each extension is saved before it returns."""
    fake = FakeTime(1000.0)
    saved: list[float] = []

    async def save(until: float) -> None:
        saved.append(until)

    gate = HostGate(clock=fake.clock, save=save)
    assert await gate.extend(2000.0) and not await gate.extend(1500.0)
    assert await gate.extend(2500.0) and not await gate.extend(math.nan)
    assert not await gate.extend(900.0)  # already past: no pause, nothing to save
    assert gate.paused_until == 2500.0 and saved == [2000.0, 2500.0]


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


async def test_a_new_rate_applies_from_the_next_reservation() -> None:
    """set_rate (daemons sharing the budget) spaces later requests at the new interval."""
    fake = FakeTime(0.0)
    limiter = RateLimiter(10.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(2):
        await limiter.acquire()
    limiter.set_rate(5.0)
    for _ in range(2):
        await limiter.acquire()
    assert fake.sleeps == pytest.approx([0.1, 0.1, 0.2])


async def test_sharing_splits_rate_and_concurrency(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """Two daemons: each keeps to half of max_rate and of max_concurrency (at least 1)."""
    client = client_for(http, server, max_rate=20.0, max_concurrency=3)
    client.share(2)
    assert (client._limiter._interval, client._slots.total_tokens) == (0.1, 1)
    client.share(1)
    assert (client._limiter._interval, client._slots.total_tokens) == (0.05, 3)
    await client.list_jobs()  # still a working client


async def test_slots_hold_at_most_their_total_and_serve_waiters_in_order() -> None:
    """Two slots, four tasks: two hold at once, the others enter in the order they came."""
    slots, order, holding, most = Slots(2), [], [0], [0]

    async def hold(n: int, leave: anyio.Event) -> None:
        async with slots:
            order.append(n)
            holding[0] += 1
            most[0] = max(most[0], holding[0])
            await leave.wait()
            holding[0] -= 1

    leaves = [anyio.Event() for _ in range(4)]
    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(hold, n, leaves[n])
            await anyio.wait_all_tasks_blocked()
        assert (order, slots.borrowed_tokens) == ([0, 1], 2)
        leaves[1].set()
        await anyio.wait_all_tasks_blocked()
        assert order == [0, 1, 2]
        for leave in leaves:
            leave.set()
    assert (order, most[0], slots.borrowed_tokens) == ([0, 1, 2, 3], 2, 0)


async def test_a_free_slot_is_taken_without_a_trip_through_the_event_loop() -> None:
    """Entering a free slot runs no other task first (anyio's limiter yields every time:
    a task switch per request)."""
    slots, ran = Slots(1), []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        async with slots:
            assert ran == []
    assert ran == ["other"]


async def test_a_cancelled_waiter_takes_no_slot_and_a_new_total_applies() -> None:
    """A waiter cancelled while it waits (or just as a slot is handed to it) leaves the
    count right; raising the total lets waiters in, lowering it waits for holders."""
    slots, entered = Slots(1), []
    scopes: dict[int, anyio.CancelScope] = {}

    async def wait_in(n: int) -> None:
        with anyio.CancelScope() as scopes[n]:
            async with slots:
                entered.append(n)
                await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        await slots.__aenter__()  # the test holds the one slot
        tg.start_soon(wait_in, 1)
        tg.start_soon(wait_in, 2)
        await anyio.wait_all_tasks_blocked()
        scopes[1].cancel()  # cancelled while it waits
        await anyio.wait_all_tasks_blocked()
        await slots.__aexit__(None, None, None)  # handed to waiter 2 ...
        scopes[2].cancel()  # ... which is cancelled as it wakes
        await anyio.wait_all_tasks_blocked()
        assert 1 not in entered and slots.borrowed_tokens == 0
        entered.clear()
        slots.total_tokens = 0
        tg.start_soon(wait_in, 3)
        await anyio.wait_all_tasks_blocked()
        assert entered == []
        slots.total_tokens = 2
        tg.start_soon(wait_in, 4)
        await anyio.wait_all_tasks_blocked()
        assert (entered, slots.borrowed_tokens) == ([3, 4], 2)
        tg.cancel_scope.cancel()
    assert slots.borrowed_tokens == 0


async def test_a_request_is_what_build_request_would_make() -> None:
    """Built directly (the client's headers merged once), a request has the method, URL,
    headers and timeouts `build_request` gives it, on a client with headers of its own."""
    async with httpx.AsyncClient(headers={"x-client": "1", "accept": "*/*"}) as http:
        own = {"authorization": "Bearer k", "accept": "application/json"}
        ex = Exchange(
            method="GET",
            url="http://127.0.0.1:9/v1/fine-tunes/ft-a/metrics",
            params={"global_step_from": "14", "logged_at_from": "2026-05-19T13:05:40+00:00"},
            headers=request_headers(http, own),
            timeout=12.5,
            max_body=1 << 20,
            secret="k",
        )
        built = build(http, ex)
        usual = http.build_request(ex.method, ex.url, params=ex.params, headers=own, timeout=12.5)
        assert (built.method, built.url) == (usual.method, usual.url)
        assert (built.headers.raw, built.extensions) == (usual.headers.raw, usual.extensions)


async def test_a_cookie_the_service_sets_is_sent_back(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A cookie a response sets goes with the next request, as httpx clients do."""
    cookie = json_reply(JOB, headers=(("content-type", "application/json"), ("set-cookie", "lb=7")))
    server.push(cookie)
    client = client_for(http, server)
    await client.retrieve("ft-abc")
    await client.retrieve("ft-abc")
    assert "cookie" not in server.seen[0].headers
    assert server.seen[1].headers["cookie"] == "lb=7"
