"""Leases: which daemon polls which job, and runs which delivery, on a shared database.

Every daemon calls `claim` in one transaction: it renews its heartbeat (`daemons`)
and its job leases, gives back what exceeds its fair share (live jobs / live daemons,
rounded up) so a daemon that joins gets work, and takes free or expired job leases up
to that share with `FOR UPDATE SKIP LOCKED` on the job rows. A lease that changes
holder gets `token + 1`: the fencing token. A write for a job (`fence_job`) locks the
job row and checks that this daemon still holds its lease with the token it was given,
so a paused or partitioned daemon cannot write after its lease passed to another.

Timing, for a configured `lease` L: what a daemon holds (heartbeat, job and delivery
leases) runs out HOLD·L after its last claim, and it claims again every RENEW·L, or
sooner: as soon as a lease another daemon holds on a live job runs out (`Claimed.again_in`).
So a daemon that dies has its work taken over at most HOLD·L (plus one claim) after
its last renewal, within L of its death, and a live daemon may miss renewals for
(HOLD - RENEW)·L before it loses anything. Every lease is in the database's clock, so
the hosts' clocks need not agree. No session advisory locks: everything is rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from watcherd.errors import LeaseLostError
from watcherd.model import INTERRUPTED, TERMINAL_STATUSES
from watcherd.store.postgres.sql import NOW, Conn, fetch, one
from watcherd.store.postgres.writer import ENSURE_JOB

T = TypeVar("T")

_LIVE: Final = (
    "j.watched = 1 AND (j.status IS NULL OR NOT (j.status = ANY(%(terminal)s))"
    " OR j.metrics_pending = 1)"
)
_TERMINAL: Final = sorted(TERMINAL_STATUSES)
#: Heartbeats of daemons gone this long are deleted.
_FORGET_AFTER: Final = 86_400.0
#: What a claim takes or renews is held for this fraction of the configured lease...
HOLD: Final = 0.75
#: ...and renewed this often (as a fraction of it).
RENEW: Final = 0.25
#: Claim this long after another daemon's lease ran out (it must have run out by then).
_AFTER_EXPIRY: Final = 0.05


@dataclass(frozen=True, slots=True)
class Member:
    """This daemon as the database knows it."""

    instance: str
    host: str
    pid: int
    lease: float

    @property
    def hold(self) -> float:
        """Seconds a claim holds what it takes (unrenewed)."""
        return self.lease * HOLD

    @property
    def renew_every(self) -> float:
        """Seconds between renewals while nothing else is due."""
        return self.lease * RENEW


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim found: the jobs held (with their fencing tokens), the live daemons,
    and how soon to claim again (a renewal due, or another daemon's lease running out)."""

    held: dict[str, int]
    daemons: int
    again_in: float


async def db_now(conn: Conn) -> float:
    """The database's clock, epoch seconds."""
    found = await one(conn, f"SELECT {NOW}")
    assert found is not None
    return float(found[0])


async def claim(conn: Conn, me: Member) -> Claimed:
    """Heartbeat, renew, rebalance and claim; see the module's docstring."""
    now = await db_now(conn)
    alive = await _heartbeat(conn, me, now)
    args = {"me": me.instance, "now": now, "until": now + me.hold, "terminal": _TERMINAL}
    held = await _renew(conn, args)
    total = await one(conn, f"SELECT COUNT(*) FROM jobs AS j WHERE {_LIVE}", args)
    share = math.ceil(int(total[0] if total else 0) / max(alive, 1))
    if len(held) > share:
        extra = sorted(held)[share:]
        await conn.execute(
            "DELETE FROM leases WHERE holder = %s AND name = ANY(%s)",
            (me.instance, ["job:" + j for j in extra]),
        )
        held = {j: t for j, t in held.items() if j not in extra}
    elif len(held) < share:
        held |= await _take(conn, args, share - len(held))
    await conn.execute(
        "UPDATE deliveries SET lease_expires = %(until)s"
        " WHERE state = 'running' AND lease_holder = %(me)s",
        args,
    )
    return Claimed(held, max(alive, 1), await _again_in(conn, me, now, args))


async def _again_in(conn: Conn, me: Member, now: float, args: dict[str, object]) -> float:
    """Seconds to the next claim: the renewal, or just after the first lease another
    daemon holds on a live job runs out (it may have died), whichever comes first."""
    found = await one(
        conn,
        "SELECT MIN(l.expires_at) FROM leases AS l JOIN jobs AS j ON l.name = 'job:' || j.job_id"
        f" WHERE l.holder <> %(me)s AND l.expires_at > %(now)s AND {_LIVE}",
        args,
    )
    renew = me.renew_every
    if found is None or found[0] is None:
        return renew
    return min(renew, float(found[0]) - now + _AFTER_EXPIRY)


async def _heartbeat(conn: Conn, me: Member, now: float) -> int:
    """Note this daemon alive until its leases run out; return how many daemons are alive."""
    await conn.execute(
        "INSERT INTO daemons (instance, host, pid, started_at, seen_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (instance) DO UPDATE SET"
        " seen_at = excluded.seen_at, expires_at = excluded.expires_at",
        (me.instance, me.host, me.pid, now, now, now + me.hold),
    )
    await conn.execute("DELETE FROM daemons WHERE expires_at < %s", (now - _FORGET_AFTER,))
    found = await one(conn, "SELECT COUNT(*) FROM daemons WHERE expires_at > %s", (now,))
    return int(found[0]) if found else 1


async def _renew(conn: Conn, args: dict[str, object]) -> dict[str, int]:
    """Extend this daemon's unexpired job leases on live jobs; drop those on settled jobs."""
    await conn.execute(
        "DELETE FROM leases AS l USING jobs AS j WHERE l.holder = %(me)s"
        f" AND l.name = 'job:' || j.job_id AND NOT ({_LIVE})",
        args,
    )
    rows = await fetch(
        conn,
        "UPDATE leases SET expires_at = %(until)s WHERE holder = %(me)s"
        " AND expires_at > %(now)s AND name LIKE 'job:%%' RETURNING name, token",
        args,
    )
    return {str(name)[4:]: int(token) for name, token in rows}


async def _take(conn: Conn, args: dict[str, object], wanted: int) -> dict[str, int]:
    """Free or expired leases on live jobs, up to `wanted`, skipping rows others lock."""
    rows = await fetch(
        conn,
        "SELECT j.job_id FROM jobs AS j LEFT JOIN leases AS l ON l.name = 'job:' || j.job_id"
        f" WHERE {_LIVE} AND (l.name IS NULL OR l.expires_at <= %(now)s)"
        " ORDER BY j.added_at, j.job_id LIMIT %(wanted)s FOR UPDATE OF j SKIP LOCKED",
        args | {"wanted": wanted},
    )
    if not rows:
        return {}
    taken = await fetch(
        conn,
        "INSERT INTO leases (name, holder, token, expires_at)"
        " SELECT 'job:' || id, %(me)s, 1, %(until)s FROM unnest(%(ids)s::text[]) AS u(id)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
        " token = leases.token + 1, expires_at = excluded.expires_at"
        " WHERE leases.expires_at <= %(now)s RETURNING name, token",
        args | {"ids": [r[0] for r in rows]},
    )
    return {str(name)[4:]: int(token) for name, token in taken}


async def fenced(
    conn: Conn,
    fence: tuple[str, int | None] | None,
    job_id: str,
    op: Callable[..., Awaitable[T]],
    *args: Any,
) -> T:
    """`op` after locking the job row and, in a cluster, checking this daemon's lease."""
    if fence is not None:
        await lock_job(conn, job_id)
        await fence_job(conn, job_id, *fence)
    return await op(conn, *args)


async def lock_job(conn: Conn, job_id: str) -> None:
    """Create the job row if missing and lock it to the commit (`claim` skips it then)."""
    await conn.execute(ENSURE_JOB, (job_id, time.time()))
    await conn.execute("SELECT 1 FROM jobs WHERE job_id = %s FOR UPDATE", (job_id,))


async def fence_job(conn: Conn, job_id: str, holder: str, token: int | None) -> None:
    """Refuse the write unless `holder` still holds the job's lease with `token`.

    The caller has locked the job row, which `claim` skips, so the lease cannot pass to
    another daemon between this check and the commit.
    """
    found = await one(
        conn,
        f"SELECT 1 FROM leases WHERE name = %s AND holder = %s AND token = %s"
        f" AND expires_at > {NOW}",
        ("job:" + job_id, holder, token),
    )
    if token is None or found is None:
        raise LeaseLostError(f"{job_id}: this daemon's lease passed to another daemon")


async def release_all(conn: Conn, holder: str) -> None:
    """A clean stop: give back every job lease and the heartbeat at once."""
    await conn.execute("DELETE FROM leases WHERE holder = %s", (holder,))
    await conn.execute("DELETE FROM daemons WHERE instance = %s", (holder,))


async def recover_expired(conn: Conn, now: float) -> list[str]:
    """Running deliveries whose holder's lease ran out (database clock) become failed,
    due at `now` (the caller's clock, like every outbox time)."""
    rows = await fetch(
        conn,
        "UPDATE deliveries SET state = 'failed', next_attempt_at = %s, last_error = %s,"
        " updated_at = %s, lease_holder = NULL WHERE state = 'running'"
        f" AND (lease_expires IS NULL OR lease_expires <= {NOW}) RETURNING id",
        (now, INTERRUPTED, now),
    )
    return sorted(str(r[0]) for r in rows)


async def live_daemons(conn: Conn) -> list[tuple[str, str, int]]:
    """(instance, host, pid) of every daemon whose heartbeat has not expired."""
    rows = await fetch(
        conn,
        f"SELECT instance, host, pid FROM daemons WHERE expires_at > {NOW} ORDER BY started_at",
    )
    return [(str(i), str(h), int(p)) for i, h, p in rows]


async def try_lease(conn: Conn, name: str, holder: str, seconds: float) -> bool:
    """Take (or keep) the named lease for `seconds` unless another holds it unexpired."""
    found = await one(
        conn,
        f"INSERT INTO leases (name, holder, token, expires_at) VALUES (%s, %s, 1, {NOW} + %s)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
        " token = leases.token + (leases.holder <> excluded.holder)::int,"
        f" expires_at = excluded.expires_at WHERE leases.expires_at <= {NOW}"
        " OR leases.holder = excluded.holder RETURNING token",
        ("named:" + name, holder, seconds),
    )
    return found is not None
