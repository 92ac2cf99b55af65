"""The hook outbox on PostgreSQL: the same lifecycle as `watcherd.store.outbox`."""

from __future__ import annotations

from typing import Final

from watcherd.errors import StoreError
from watcherd.model import INTERRUPTED, Delivery
from watcherd.store.outbox import COLUMNS, OUTCOMES, to_delivery
from watcherd.store.postgres.sql import Conn, fetch, one

_SELECT: Final = f"SELECT {COLUMNS} FROM deliveries"


async def start_attempt(conn: Conn, ident: str, now: float) -> int:
    """Mark the delivery running and count the attempt; return the attempt number."""
    found = await one(
        conn,
        "UPDATE deliveries SET state = 'running', attempts = attempts + 1, started_at = %s,"
        " updated_at = %s WHERE id = %s RETURNING attempts",
        (now, now, ident),
    )
    if found is None:
        raise StoreError(f"no hook delivery {ident!r}")
    return int(found[0])


async def finish_attempt(
    conn: Conn,
    ident: str,
    now: float,
    *,
    outcome: str,
    error: str | None,
    output_tail: str | None,
    next_attempt_at: float | None,
) -> None:
    """Record an attempt's outcome: delivered, failed (due again at next_attempt_at) or dead."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    due = (now if next_attempt_at is None else next_attempt_at) if outcome == "failed" else None
    cur = await conn.execute(
        "UPDATE deliveries SET state = %s, last_error = %s, output_tail = %s,"
        " next_attempt_at = %s, updated_at = %s WHERE id = %s",
        (outcome, error, output_tail, due, now, ident),
    )
    if not cur.rowcount:
        raise StoreError(f"no hook delivery {ident!r}")


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
