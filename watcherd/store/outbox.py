"""The transactional outbox: one delivery row per (job, status, hook), and its lifecycle.

States: pending -> running -> delivered | failed (retried at next_attempt_at) | dead.
A `running` row found at start-up was cut by a crash and becomes `failed`, due now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from watcherd.alerts.events import subscribes
from watcherd.errors import StoreError
from watcherd.model import INTERRUPTED, WAITING_DELIVERIES, Delivery, DeliveryState

if TYPE_CHECKING:
    import aiosqlite

    from watcherd.store.records import HookLike

OUTCOMES: Final = frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.DEAD})

COLUMNS: Final = (
    "id, job_id, hook, event, previous_status, occurred_at, state, attempts, "
    "next_attempt_at, last_error, output_tail, updated_at"
)
#: `state IN (...)` of the deliveries `due` and `next_due` look at, and its parameters.
WAITING: Final = tuple(sorted(WAITING_DELIVERIES))
WAITING_IN: Final = f"state IN ({', '.join('?' * len(WAITING))})"


def delivery_id(job_id: str, status: str, hook: str) -> str:
    """The deterministic id, so a re-detected transition maps to the same row."""
    return f"{job_id}:{status}:{hook}"


def to_delivery(row: Sequence[Any]) -> Delivery:
    """A `deliveries` row (selected with COLUMNS) as the read model."""
    fields = list(row)
    fields[6] = DeliveryState(fields[6])  # the state column
    return Delivery(*fields)


async def enqueue(
    conn: aiosqlite.Connection,
    job_id: str,
    status: str,
    previous: str | None,
    occurred_at: float,
    hooks: Sequence[HookLike],
    *,
    name: str | None = None,
) -> list[str]:
    """Write a pending delivery for every hook on `status`; return the ids newly created.

    `status` is the event (a status, or an alert event such as `alert.stalled`); `name`
    replaces it in the delivery id (an alert's `alert.stalled:2`). One statement for
    all hooks; RETURNING names the rows it inserted.
    """
    at = occurred_at
    rows = [
        (
            delivery_id(job_id, name or status, hook.name),
            job_id,
            hook.name,
            status,
            previous,
            at,
            DeliveryState.PENDING,
            at,
            at,
            at,
        )
        for hook in hooks
        if subscribes(hook.on, status)
    ]
    if not rows:
        return []
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
    found = await conn.execute_fetchall(
        "INSERT INTO deliveries (id, job_id, hook, event, previous_status, occurred_at,"
        f" state, next_attempt_at, created_at, updated_at) VALUES {values}"
        " ON CONFLICT(id) DO NOTHING RETURNING id",
        [value for row in rows for value in row],
    )
    created = {str(r[0]) for r in found}
    ordered = [row[0] for row in rows if row[0] in created]
    return list(dict.fromkeys(ordered))  # in hook order, each id once


async def start_attempt(conn: aiosqlite.Connection, ident: str, now: float) -> int:
    """Mark the delivery running and count the attempt; return the attempt number."""
    cur = await conn.execute(
        "UPDATE deliveries SET state = ?, attempts = attempts + 1, started_at = ?,"
        " updated_at = ? WHERE id = ? RETURNING attempts",
        (DeliveryState.RUNNING, now, now, ident),
    )
    row = await cur.fetchone()
    await cur.close()
    if row is None:
        raise StoreError(f"no hook delivery {ident!r}")
    return int(row[0])


async def finish_attempt(
    conn: aiosqlite.Connection,
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
        known = sorted(map(str, OUTCOMES))
        raise ValueError(f"outcome must be one of {known}, not {outcome!r}")
    failed = outcome == DeliveryState.FAILED
    due = (now if next_attempt_at is None else next_attempt_at) if failed else None
    cur = await conn.execute(
        "UPDATE deliveries SET state = ?, last_error = ?, output_tail = ?, next_attempt_at = ?,"
        " updated_at = ? WHERE id = ?",
        (outcome, error, output_tail, due, now, ident),
    )
    if not cur.rowcount:
        raise StoreError(f"no hook delivery {ident!r}")


async def recover_interrupted(conn: aiosqlite.Connection, now: float) -> list[str]:
    """Turn deliveries left `running` by a crash into `failed`, due now; return their ids."""
    cur = await conn.execute(
        "UPDATE deliveries SET state = ?, next_attempt_at = ?, last_error = ?,"
        " updated_at = ? WHERE state = ? RETURNING id",
        (DeliveryState.FAILED, now, INTERRUPTED, now, DeliveryState.RUNNING),
    )
    rows = await cur.fetchall()
    await cur.close()
    return sorted(str(r[0]) for r in rows)


async def requeue(conn: aiosqlite.Connection, ident: str, now: float) -> bool:
    """Put a delivery that is not running back to pending, due now, with attempts reset."""
    cur = await conn.execute(
        "UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = ?,"
        " updated_at = ? WHERE id = ? AND state != ?",
        (DeliveryState.PENDING, now, now, ident, DeliveryState.RUNNING),
    )
    return bool(cur.rowcount)


async def due(conn: aiosqlite.Connection, now: float, limit: int) -> list[Delivery]:
    """Pending or failed deliveries whose time has come, oldest due first."""
    rows = await conn.execute_fetchall(
        f"SELECT {COLUMNS} FROM deliveries WHERE {WAITING_IN}"
        " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
        (*WAITING, now, limit),
    )
    return [to_delivery(r) for r in rows]


async def next_due(conn: aiosqlite.Connection) -> float | None:
    """When the next pending or failed delivery falls due, if any."""
    rows = await conn.execute_fetchall(
        f"SELECT MIN(next_attempt_at) FROM deliveries WHERE {WAITING_IN}", WAITING
    )
    row = next(iter(rows), None)
    return None if row is None or row[0] is None else float(row[0])


async def listing(conn: aiosqlite.Connection, job_id: str | None) -> list[Delivery]:
    """Every delivery (or one job's), in the order they were created."""
    where, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
    async with conn.execute(
        f"SELECT {COLUMNS} FROM deliveries {where} ORDER BY created_at, id", params
    ) as cur:
        return [to_delivery(r) for r in await cur.fetchall()]


async def one(conn: aiosqlite.Connection, ident: str) -> Delivery | None:
    """One delivery by id."""
    async with conn.execute(f"SELECT {COLUMNS} FROM deliveries WHERE id = ?", (ident,)) as cur:
        row = await cur.fetchone()
    return None if row is None else to_delivery(row)
