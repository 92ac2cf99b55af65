"""The hook outbox on PostgreSQL: the same lifecycle as `watcherd.store.outbox`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from watcherd.alerts.events import subscribes
from watcherd.errors import LeaseLostError, StoreError
from watcherd.model import INTERRUPTED, Delivery
from watcherd.store.outbox import COLUMNS, OUTCOMES, delivery_id, to_delivery
from watcherd.store.postgres.sql import NOW, Conn, fetch, one
from watcherd.store.records import HookLike

_SELECT: Final = f"SELECT {COLUMNS} FROM deliveries"


async def enqueue(
    conn: Conn,
    job_id: str,
    status: str,
    previous: str | None,
    at: float,
    hooks: Sequence[HookLike],
    *,
    name: str | None = None,
) -> list[str]:
    """A pending delivery for every hook on `status` (a status or an alert event; `name`
    replaces it in the id, as on SQLite); the ids newly created, in hook order."""
    taking = [h.name for h in hooks if subscribes(h.on, status)]
    ids = list(dict.fromkeys(delivery_id(job_id, name or status, hook) for hook in taking))
    if not ids:
        return []
    found = await fetch(
        conn,
        "INSERT INTO deliveries (id, job_id, hook, event, previous_status, occurred_at,"
        " state, next_attempt_at, created_at, updated_at)"
        " SELECT i, %s, h, %s, %s, %s, 'pending', %s, %s, %s"
        " FROM unnest(%s::text[], %s::text[]) AS u(i, h)"
        " ON CONFLICT (id) DO NOTHING RETURNING id",
        (job_id, status, previous, at, at, at, at, ids, list(dict.fromkeys(taking))),
    )
    created = {str(r[0]) for r in found}
    return [i for i in ids if i in created]


async def start_attempt(conn: Conn, ident: str, now: float, holder: str, lease: float) -> int:
    """Take a waiting delivery: running, held by `holder` for `lease` seconds (in the
    database's clock, like every lease), attempt + 1.

    LeaseLostError when another daemon took it first (it is running or settled now).
    """
    found = await one(
        conn,
        "UPDATE deliveries SET state = 'running', attempts = attempts + 1, started_at = %s,"
        f" updated_at = %s, lease_holder = %s, lease_expires = {NOW} + %s"
        " WHERE id = %s AND state IN ('pending', 'failed') RETURNING attempts",
        (now, now, holder, lease, ident),
    )
    if found is None:
        await _refuse(conn, ident, "another daemon took it")
    assert found is not None
    return int(found[0])


async def _refuse(conn: Conn, ident: str, why: str) -> None:
    """LeaseLostError if the delivery exists (someone else has it), else StoreError."""
    if await one(conn, "SELECT 1 FROM deliveries WHERE id = %s", (ident,)) is None:
        raise StoreError(f"no hook delivery {ident!r}")
    raise LeaseLostError(f"hook delivery {ident!r}: {why}")


async def finish_attempt(
    conn: Conn,
    ident: str,
    now: float,
    *,
    fence: tuple[str, int] | None,
    outcome: str,
    error: str | None,
    output_tail: str | None,
    next_attempt_at: float | None,
) -> None:
    """Record an attempt's outcome: delivered, failed (due again at next_attempt_at) or dead.

    With a `fence` (holder, attempt) the row must still be that attempt of that holder;
    without one (no attempt was started here) it must not be running elsewhere.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    due = (now if next_attempt_at is None else next_attempt_at) if outcome == "failed" else None
    values = (outcome, error, output_tail, due, now, ident)
    update = (
        "UPDATE deliveries SET state = %s, last_error = %s, output_tail = %s,"
        " next_attempt_at = %s, updated_at = %s, lease_holder = NULL WHERE id = %s"
    )
    if fence is None:
        cur = await conn.execute(update + " AND state != 'running'", values)
    else:
        cur = await conn.execute(
            update + " AND state = 'running' AND lease_holder = %s AND attempts = %s",
            (*values, *fence),
        )
    if not cur.rowcount:
        await _refuse(conn, ident, "this daemon's lease on it passed to another daemon")


async def recover_interrupted(conn: Conn, now: float) -> list[str]:
    """Turn deliveries left `running` by a crash into `failed`, due now; return their ids."""
    rows = await fetch(
        conn,
        "UPDATE deliveries SET state = 'failed', next_attempt_at = %s, last_error = %s,"
        " updated_at = %s WHERE state = 'running' RETURNING id",
        (now, INTERRUPTED, now),
    )
    return sorted(str(r[0]) for r in rows)


async def requeue(conn: Conn, ident: str, now: float) -> bool:
    """Put a delivery that is not running back to pending, due now, with attempts reset."""
    cur = await conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = %s,"
        " updated_at = %s WHERE id = %s AND state != 'running'",
        (now, now, ident),
    )
    return bool(cur.rowcount)


async def due(conn: Conn, now: float, limit: int) -> list[Delivery]:
    """Pending or failed deliveries whose time has come, oldest due first."""
    rows = await fetch(
        conn,
        f"{_SELECT} WHERE state IN ('pending', 'failed')"
        " AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT %s",
        (now, limit),
    )
    return [to_delivery(r) for r in rows]


async def next_due(conn: Conn) -> float | None:
    """When the next pending or failed delivery falls due, if any."""
    found = await one(
        conn, "SELECT MIN(next_attempt_at) FROM deliveries WHERE state IN ('pending', 'failed')"
    )
    return None if found is None or found[0] is None else float(found[0])


async def listing(conn: Conn, job_id: str | None) -> list[Delivery]:
    """Every delivery (or one job's), in the order they were created."""
    where, params = ("WHERE job_id = %s", (job_id,)) if job_id is not None else ("", ())
    rows = await fetch(conn, f"{_SELECT} {where} ORDER BY created_at, id", params)
    return [to_delivery(r) for r in rows]


async def one_delivery(conn: Conn, ident: str) -> Delivery | None:
    """One delivery by id."""
    found = await one(conn, f"{_SELECT} WHERE id = %s", (ident,))
    return None if found is None else to_delivery(found)
