"""Leases on a shared PostgreSQL store: fair shares, failover, fencing of late writers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import anyio
import psycopg
import pytest

from watcherd.errors import LeaseLostError
from watcherd.model import DeliveryState
from watcherd.store import HookSub, PollRecord
from watcherd.store.postgres.core import PgStore

pytestmark = pytest.mark.anyio

JOBS = [f"ft-{i:02d}" for i in range(10)]
HOOKS = (HookSub("h", ("completed",)),)


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgStore, PgStore]]:
    """Two daemons' stores on one database with ten watched jobs (2 s leases)."""
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        other = await stack.enter_async_context(PgStore.open(pg_url, writer=True, lease=2.0))
        await one.sync_watched([(j, None) for j in JOBS], 1.0)
        yield one, other


def _expire(url: str, holder: str) -> None:
    """Make every lease and the heartbeat of `holder` run out now (a daemon that died)."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE leases SET expires_at = 0 WHERE holder = %s", (holder,))
        conn.execute("UPDATE daemons SET expires_at = 0 WHERE instance = %s", (holder,))
        conn.execute("UPDATE deliveries SET lease_expires = 0 WHERE lease_holder = %s", (holder,))


async def test_two_daemons_split_the_jobs_without_overlap(two: tuple[PgStore, PgStore]) -> None:
    """The first takes all; once a second is alive, the first gives back the surplus."""
    one, other = two
    assert await one.claim_work() == frozenset(JOBS)
    assert await other.claim_work() == frozenset()  # heartbeat now: two alive
    mine = await one.claim_work()  # keeps its fair share, 5
    theirs = await other.claim_work()
    assert mine is not None and theirs is not None
    assert (len(mine), len(theirs)) == (5, 5) and not mine & theirs
    assert await one.claim_work() == mine  # renewing keeps the same jobs


async def test_a_dead_daemons_jobs_pass_to_the_other_with_a_new_token(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """After the holder's leases expire the other claims all; the old holder's write fails."""
    one, other = two
    await one.claim_work()
    await other.claim_work()
    _expire(pg_url, one.member.instance)
    assert await other.claim_work() == frozenset(JOBS)
    with pytest.raises(LeaseLostError, match="ft-00"):
        await one.record_poll(PollRecord("ft-00", 5.0, None, "running"))
    result = await other.record_poll(PollRecord("ft-00", 5.0, None, "running"))
    assert result.transition == (None, "running")
    assert (await other.job_states())["ft-00"].status == "running"


async def test_writes_for_jobs_not_held_are_refused(two: tuple[PgStore, PgStore]) -> None:
    """A daemon in a cluster writes only jobs it holds: polls, failures and `missing`."""
    one, other = two
    await one.claim_work()
    await other.claim_work()
    with pytest.raises(LeaseLostError):
        await other.record_failure("ft-00", 3.0, "boom", not_found=True)
    with pytest.raises(LeaseLostError):
        await other.mark_missing("ft-00", 3.0, HOOKS)
    assert await one.record_failure("ft-00", 3.0, "boom", not_found=True) == 1


async def test_a_delivery_runs_once_and_a_late_finish_is_fenced(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """One daemon wins start_attempt; after its lease expires the other recovers and
    reruns the delivery, and the first one's late outcome is refused."""
    one, other = two
    await one.claim_work()  # all ten jobs: ft-00 is its to write
    await other.claim_work()
    await one.record_poll(PollRecord("ft-00", 1.0, None, "completed", (), HOOKS))
    ident = "ft-00:completed:h"
    assert await one.start_attempt(ident, 2.0) == 1
    with pytest.raises(LeaseLostError, match="another daemon took it"):
        await other.start_attempt(ident, 2.0)
    assert await other.due_deliveries(3.9, limit=10) == []  # its holder's lease runs: kept
    _expire(pg_url, one.member.instance)
    assert [d.id for d in await other.due_deliveries(3.9, limit=10)] == [ident]
    assert await other.start_attempt(ident, 3.0) == 2
    with pytest.raises(LeaseLostError):
        await one.finish_attempt(
            ident,
            4.0,
            outcome=DeliveryState.DELIVERED,
            error=None,
            output_tail=None,
            next_attempt_at=None,
        )
    await other.finish_attempt(
        ident,
        4.0,
        outcome=DeliveryState.DELIVERED,
        error=None,
        output_tail="ok",
        next_attempt_at=None,
    )
    assert [(d.state, d.attempts) for d in await one.deliveries()] == [("delivered", 2)]


async def test_claiming_renews_running_deliveries(two: tuple[PgStore, PgStore]) -> None:
    """A long hook's lease is renewed by its holder's claims, so nobody recovers it."""
    one, other = two
    await one.record_poll(PollRecord("ft-00", 1.0, None, "completed", (), HOOKS))
    await one.start_attempt("ft-00:completed:h", 2.0)
    await other.claim_work()
    await one.claim_work()  # renewed in the database's clock: far past the 2.0 + 2 s
    assert await other.due_deliveries(1_000_000.0, limit=10) == []
    assert [d.state for d in await other.deliveries()] == ["running"]


async def test_a_clean_close_hands_over_at_once(pg_url: str) -> None:
    """Closing gives back the leases and the heartbeat: the next daemon claims all now."""
    async with PgStore.open(pg_url, writer=True, lease=30.0) as first:
        await first.sync_watched([(j, None) for j in JOBS], 1.0)
        assert await first.claim_work() == frozenset(JOBS)
    async with PgStore.open(pg_url, writer=True, lease=30.0) as second:
        assert await second.claim_work() == frozenset(JOBS)
        assert len(await second.live_daemons()) == 1


def _db(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of one statement run on the database directly."""
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


async def test_leases_run_out_within_the_lease_of_the_last_renewal(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """Held for 3/4 of the lease and renewed every quarter, so a daemon that dies right
    after a renewal has its jobs taken over within the lease (2 s here)."""
    one, _ = two
    started = time.monotonic()
    await one.claim_work()
    [(left,)] = _db(
        pg_url,
        "SELECT MAX(expires_at) - extract(epoch from clock_timestamp()) FROM leases"
        " WHERE holder = %s",
        one.member.instance,
    )
    waited = time.monotonic() - started  # on a loaded machine the check comes later
    assert 1.5 - waited - 0.05 < float(str(left)) <= 1.5
    assert one.next_claim_in == pytest.approx(0.5)


async def test_a_daemon_claims_again_as_soon_as_another_daemons_lease_runs_out(
    two: tuple[PgStore, PgStore], pg_url: str
) -> None:
    """The other daemon's leases run out in 0.2 s (its last renewal was long ago): the
    next claim is due then, not at the next renewal; made then, it takes those jobs."""
    one, other = two
    await one.claim_work()
    await other.claim_work()
    _db(
        pg_url,
        "UPDATE leases SET expires_at = extract(epoch from clock_timestamp()) + 0.2"
        " WHERE holder = %s RETURNING 1",
        one.member.instance,
    )
    _db(
        pg_url,
        "UPDATE daemons SET expires_at = 0 WHERE instance = %s RETURNING 1",
        one.member.instance,
    )
    await other.claim_work()
    assert other.next_claim_in is not None and 0.0 < other.next_claim_in <= 0.26
    await anyio.sleep(other.next_claim_in)
    assert await other.claim_work() == frozenset(JOBS)


async def test_a_host_whose_clock_runs_ahead_takes_no_live_daemons_delivery(
    two: tuple[PgStore, PgStore],
) -> None:
    """Delivery leases are in the database's clock: a daemon whose clock is an hour ahead
    does not take a running delivery whose holder renews it."""
    one, other = two
    await one.claim_work()
    await one.record_poll(PollRecord("ft-00", 1.0, None, "completed", (), HOOKS))
    await one.start_attempt("ft-00:completed:h", time.time())
    await other.claim_work()  # a daemon sharing the work: it recovers what ran out
    assert await other.due_deliveries(time.time() + 3600, limit=10) == []
    assert [d.state for d in await other.deliveries()] == ["running"]


async def test_a_shorter_pause_never_shortens_the_one_another_daemon_stored(
    two: tuple[PgStore, PgStore],
) -> None:
    """Two daemons store pauses for one host: the later end stays, whatever the order;
    lifting (None) still deletes it."""
    one, other = two
    await one.set_host_pause("api", 2_000.5)
    await other.set_host_pause("api", 1_000.0)
    assert await one.host_pauses() == {"api": 2_000.5}
    await other.set_host_pause("api", 3_000.0)
    assert await one.host_pauses() == {"api": 3_000.0}
    await one.set_host_pause("api", None)
    assert await other.host_pauses() == {}
