"""The pause other daemons stored, read before each request: fresh, shared, cheap."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import anyio
import anyio.lowlevel
import httpx
import pytest
from structlog.testing import capture_logs

from tests.fakeclock import FakeTime
from tests.faultserver import FaultServer, json_reply
from watcherd.api.client import ApiClient
from watcherd.api.limits import HostGate
from watcherd.api.sharedpause import FAILED_RETRY, SharedPause
from watcherd.errors import RateLimitedError, StoreError
from watcherd.store.postgres.core import PgStore
from watcherd.watch.wiring import saved_gate

pytestmark = pytest.mark.anyio

KEY = "sk-shared-SECRET"
JOB = {"id": "ft-abc", "status": "running"}


class Stored:
    """A stored pause whose reads can be held open, counting them."""

    def __init__(self) -> None:
        self.value: float | None = None
        self.started = 0
        self.release = anyio.Event()
        self.hold = False

    async def read(self) -> float | None:
        self.started += 1
        value = self.value  # what the database answers is what was stored when it read
        if self.hold:
            await self.release.wait()
        return value


async def test_a_read_under_way_when_a_caller_came_does_not_serve_it() -> None:
    """A caller that arrives during a read gets a read begun after it came, with the
    pause stored meanwhile; every caller that came during that read shares one read."""
    stored = Stored()
    shared = SharedPause(stored.read)
    found: list[float | None] = []

    async def call() -> None:
        called = time.time()
        value, read_at = await shared.current()
        assert read_at is not None and read_at >= called  # a read begun after the call
        found.append(value)

    stored.hold = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(call)  # the first read starts and is held
        await anyio.wait_all_tasks_blocked()
        for _ in range(5):
            tg.start_soon(call)  # came during the first read
        await anyio.wait_all_tasks_blocked()
        stored.value = 123.0  # another daemon stores its pause now
        stored.hold = False
        stored.release.set()
    assert found == [None] + [123.0] * 5
    assert stored.started == 2


async def test_an_unreadable_database_lets_requests_go_on_and_is_tried_again_later() -> None:
    """A failed read returns the last pause known, is logged once, and the database is
    not read again for FAILED_RETRY seconds."""
    fake = FakeTime(100.0)
    calls: list[float] = []

    async def failing() -> float | None:
        calls.append(fake.clock())
        raise StoreError("db: connection refused")

    shared = SharedPause(failing, clock=fake.clock)
    with capture_logs() as logs:
        assert await shared.current() == (None, None)
        assert await shared.current() == (None, None)
        fake.now += FAILED_RETRY
        assert await shared.current() == (None, None)
    assert calls == [100.0, 100.0 + FAILED_RETRY]
    assert [e["event"] for e in logs] == ["api.shared_pause_unread"]


async def test_a_pause_one_daemon_stores_holds_the_next_request_of_another(
    http: httpx.AsyncClient, server: FaultServer, pg_url: str
) -> None:
    """Daemon A meets a 429 (Retry-After 30 s) and stores it; daemon B's next request,
    started after that, waits instead of going out, though B never polled the store."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            store = await stack.enter_async_context(PgStore.open(pg_url, writer=True))
            gate = saved_gate(store, "127.0.0.1", shared=True)
            client = ApiClient(http, base_url=server.url, api_key=KEY, gate=gate, timeout=5)
            clients.append(client)
        one, other = clients
        slow = json_reply({"error": {"message": "slow"}}, 429, headers=(("retry-after", "30"),))
        server.push(slow)
        with pytest.raises(RateLimitedError):
            await one.retrieve("ft-abc")
        assert len(server.seen) == 1
        with pytest.raises(RateLimitedError, match="paused for another"):
            await other.retrieve("ft-abc")
        assert len(server.seen) == 1  # B sent nothing
        assert other.gate.paused_until == pytest.approx(one.gate.paused_until, abs=0.01)


async def test_concurrent_requests_share_reads_of_the_stored_pause(
    http: httpx.AsyncClient, server: FaultServer, pg_url: str
) -> None:
    """Twenty requests at once make far fewer than twenty reads (they share them)."""
    server.push(*[json_reply(JOB)] * 20)
    async with PgStore.open(pg_url, writer=True) as store:
        gate = saved_gate(store, "127.0.0.1", shared=True)
        client = ApiClient(http, base_url=server.url, api_key=KEY, gate=gate, max_rate=0)
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.retrieve, "ft-abc")
    assert gate.shared is not None
    assert len(server.seen) == 20 and 1 <= gate.shared.reads <= 10


async def test_a_request_that_waited_out_one_pause_reads_again_before_it_goes(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """While a request reads the stored pause, another request of its daemon meets a 429
    (a 0.3 s pause here) and another daemon stores a 30 s one. The request waits out the
    0.3 s, reads again and keeps waiting (past its deadline: it gives up) instead of
    going out during the 30 s pause."""
    stored = Stored()
    gate = HostGate(shared=SharedPause(stored.read))
    client = ApiClient(http, base_url=server.url, api_key=KEY, gate=gate, timeout=2)

    async def request() -> None:
        with pytest.raises(RateLimitedError, match="paused for another"):
            await client.retrieve("ft-abc")

    stored.hold = True
    async with anyio.create_task_group() as tg:
        tg.start_soon(request)
        await anyio.wait_all_tasks_blocked()  # the request's read is under way
        await gate.extend(time.time() + 0.3)  # its daemon's own 429
        stored.value = time.time() + 30  # the other daemon's pause, stored now
        stored.hold = False
        stored.release.set()
    assert server.seen == [] and stored.started == 2
