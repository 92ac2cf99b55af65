"""The poller on a shared PostgreSQL store: taking jobs over and giving them back costs no
extra requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
import psycopg
import pytest

from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig, StoreConfig
from watcherd.store import PollRecord
from watcherd.store.postgres.core import PgStore
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio

RECENT, LONG_AGO = "ft-recent", "ft-long-ago"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgStore, PgStore]]:
    """Two daemons' stores on one database, watching two jobs (2 s leases)."""
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        other = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        await one.sync_watched([(RECENT, None), (LONG_AGO, None)], 1.0)
        yield one, other


def _config(url: str) -> Config:
    poll = PollConfig(interval=60.0, min_interval=10.0, metrics_interval=300.0)
    api = ApiConfig(base_url="http://sim.test", max_rate=0)
    return Config(api=api, poll=poll, store=StoreConfig(url=url, lease=2.0))


def _poller(store: PgStore, url: str, http: httpx.AsyncClient) -> Poller:
    config = _config(url)
    return Poller(store, ApiClient.from_config(http, config.api, "k"), config)


def _expire(url: str, holder: str) -> None:
    """Make the leases and heartbeat of `holder` run out now (a daemon that died)."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE leases SET expires_at = 0 WHERE holder = %s", (holder,))
        conn.execute("UPDATE daemons SET expires_at = 0 WHERE instance = %s", (holder,))


def _running(job_id: str) -> httpx.Response:
    return httpx.Response(200, json={"id": job_id, "status": "running"})


async def test_a_job_taken_over_keeps_the_schedule_its_last_holder_kept(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """A job the dead holder polled a second ago is due an interval after that poll, not
    now; one it last polled two minutes ago (over an interval) is polled at once."""
    one, other = two
    await one.claim_work()
    now = time.time()
    await one.record_poll(PollRecord(RECENT, now - 1, None, "running"))
    await one.record_poll(PollRecord(LONG_AGO, now - 120, None, "running"))
    _expire(pg_url, one.member.instance)
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/metrics"):
            return httpx.Response(200, json={"metrics": []})
        return _running(request.url.path.split("/")[-1])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        poller = _poller(other, pg_url, http)
        await poller.claim()
        assert poller.mine == frozenset({RECENT, LONG_AGO})
        await poller.poll_due()
    assert RECENT not in "".join(seen) and f"/v1/fine-tunes/{LONG_AGO}" in seen
    assert poller.jobs[RECENT].next_at > time.monotonic() + 50


async def test_a_job_given_back_while_its_poll_waited_is_not_fetched(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """The round's list request is under way when the jobs pass to another daemon: the
    polls queued for them fetch nothing (their new holder polls them)."""
    one, other = two
    seen: list[str] = []
    poller: Poller | None = None

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/fine-tunes"):  # the list: hand the jobs over now
            assert poller is not None
            _expire(pg_url, other.member.instance)
            await one.claim_work()
            await poller.claim()
            return httpx.Response(200, json={"data": [_running(RECENT).json()]})
        return _running(request.url.path.split("/")[-1])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        poller = _poller(other, pg_url, http)
        await poller.load_jobs()
        await poller.claim()
        assert poller.mine == frozenset({RECENT, LONG_AGO})
        await poller.poll_due()
    assert poller.mine == frozenset()
    assert seen == ["/v1/fine-tunes"]
