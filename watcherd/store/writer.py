"""Write transactions' bodies. Each function runs inside the caller's BEGIN IMMEDIATE."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiosqlite

from watcherd.model import MISSING, dumps_exact
from watcherd.store import outbox
from watcherd.store.records import HookLike, PollRecord, PollResult
from watcherd.store.rows import MetricParams, loss_text, number
from watcherd.store.sampling import number_train_rows

LAST_POLL_KEY: Final = "last_poll_ok_at"

INSERT_METRIC: Final = (
    "INSERT INTO metrics (job_id, kind, step, timestamp, loss, row_json)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(job_id, kind, step) DO NOTHING"
)

_LAST_ROW: Final = (
    "SELECT row_json FROM metrics WHERE job_id = ? AND kind = ?"
    " ORDER BY timestamp DESC, step DESC, id DESC LIMIT 1"
)


async def fetch_one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row of a query, or None (one trip to the database thread)."""
    rows = await conn.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def ensure_job(conn: aiosqlite.Connection, job_id: str, now: float) -> None:
    """Create the job row (unwatched) if this job was never seen."""
    await conn.execute(
        "INSERT INTO jobs (job_id, watched, added_at) VALUES (?, 0, ?)"
        " ON CONFLICT(job_id) DO NOTHING",
        (job_id, now),
    )


async def ensure_jobs(conn: aiosqlite.Connection, job_ids: Sequence[str], now: float) -> None:
    """Create rows (unwatched) for jobs never seen; existing rows are left alone."""
    for job_id in job_ids:
        await ensure_job(conn, job_id, now)


async def sync_watched(
    conn: aiosqlite.Connection, entries: Sequence[tuple[str, str | None]], now: float
) -> None:
    """Make exactly `entries` the watched set, with their notes; history stays."""
    await conn.execute("UPDATE jobs SET watched = 0 WHERE watched = 1")
    await conn.executemany(
        "INSERT INTO jobs (job_id, note, watched, added_at) VALUES (?, ?, 1, ?)"
        " ON CONFLICT(job_id) DO UPDATE SET note = excluded.note, watched = 1",
        [(job_id, note, now) for job_id, note in entries],
    )


async def record_poll(
    conn: aiosqlite.Connection, rec: PollRecord, params: Sequence[MetricParams]
) -> PollResult:
    """Rows, job fields, transition and outbox for one fetched page."""
    await ensure_job(conn, rec.job_id, rec.observed_at)
    first = await fetch_one(conn, "SELECT COALESCE(MAX(id), 0) FROM metrics")
    await conn.executemany(INSERT_METRIC, params)
    await number_train_rows(conn, rec.job_id, int(first[0]))
    fields, new_rows = await _metric_fields(conn, rec.job_id, int(first[0]))
    fields.update(_job_fields(rec))
    fields.update(last_poll_at=rec.observed_at, last_error=None, not_found_count=0)
    await _update_job(conn, rec.job_id, fields)
    transition, ids = await apply_status(conn, rec.job_id, rec.status, rec.observed_at, rec.hooks)
    await set_state(conn, LAST_POLL_KEY, repr(rec.observed_at))
    return PollResult(transition=transition, new_rows=new_rows, deliveries=ids)


async def _metric_fields(
    conn: aiosqlite.Connection, job_id: str, before: int
) -> tuple[dict[str, Any], int]:
    """Denormalized job fields refreshed from the rows inserted after id `before`."""
    found = await conn.execute_fetchall(
        "SELECT kind, COUNT(*), MAX(step), MIN(loss) FROM metrics WHERE id > ? GROUP BY kind",
        (before,),
    )
    new = {str(r[0]): (int(r[1]), r[2], r[3]) for r in found}
    if not new:
        return {}, 0
    old = await fetch_one(
        conn,
        "SELECT max_step, best_train_loss, best_eval_loss FROM jobs WHERE job_id = ?",
        (job_id,),
    )
    steps = [s for s in (old[0], *(n[1] for n in new.values())) if s is not None]
    fields: dict[str, Any] = {"max_step": max(steps)}
    for kind, (_, _, best) in new.items():
        last = await fetch_one(conn, _LAST_ROW, (job_id, kind))
        fields[f"{kind}_loss"] = loss_text(last[0], kind)
        prior = old[1] if kind == "train" else old[2]
        candidates = [b for b in (prior, best) if b is not None]
        fields[f"best_{kind}_loss"] = min(candidates) if candidates else None
    return fields, sum(n[0] for n in new.values())


def _job_fields(rec: PollRecord) -> dict[str, Any]:
    """Job columns taken from the job object (when one came) and the progress estimate."""
    remaining = rec.seconds_remaining
    if rec.job is None:  # a status-only sighting: its estimate (or None) is the latest word
        return {"seconds_remaining": remaining}
    progress = rec.job.get("progress")
    if remaining is None and isinstance(progress, Mapping) and progress.get("estimate_available"):
        remaining = number(progress.get("seconds_remaining"))
    return {
        "seconds_remaining": remaining,
        "job_json": dumps_exact(rec.job),
        "model": _text(rec.job.get("model")),
        "model_output_name": _text(rec.job.get("model_output_name")),
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def _update_job(conn: aiosqlite.Connection, job_id: str, fields: Mapping[str, Any]) -> None:
    # Column names come from this module only, never from input.
    assignments = ", ".join(f"{name} = ?" for name in fields)
    await conn.execute(
        f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*fields.values(), job_id)
    )


async def apply_status(
    conn: aiosqlite.Connection,
    job_id: str,
    status: str | None,
    observed_at: float,
    hooks: Sequence[HookLike],
) -> tuple[tuple[str | None, str] | None, list[str]]:
    """If `status` differs from the stored one: a transition row, the new status, the outbox."""
    row = await fetch_one(conn, "SELECT status FROM jobs WHERE job_id = ?", (job_id,))
    previous = None if row is None else row[0]
    if status is None or status == previous:
        return None, []
    await conn.execute(
        "INSERT INTO transitions (job_id, from_status, to_status, observed_at) VALUES (?, ?, ?, ?)",
        (job_id, previous, status, observed_at),
    )
    await _update_job(conn, job_id, {"status": status, "status_since": observed_at})
    ids = await outbox.enqueue(conn, job_id, status, previous, observed_at, hooks)
    return (previous, status), ids


async def record_failure(
    conn: aiosqlite.Connection, job_id: str, observed_at: float, error: str, *, not_found: bool
) -> int:
    """Note a failed poll; count 404s in a row when `not_found`. Returns that count."""
    await ensure_job(conn, job_id, observed_at)
    bump = 1 if not_found else 0
    cur = await conn.execute(
        "UPDATE jobs SET last_error = ?, last_error_at = ?, not_found_count = not_found_count + ?"
        " WHERE job_id = ? RETURNING not_found_count",
        (error, observed_at, bump, job_id),
    )
    row = await cur.fetchone()
    await cur.close()
    return int(row[0]) if row else 0


async def mark_missing(
    conn: aiosqlite.Connection, job_id: str, observed_at: float, hooks: Sequence[HookLike]
) -> PollResult:
    """Transition the job to `missing` (a watcherd status) and queue its hooks."""
    await ensure_job(conn, job_id, observed_at)
    transition, ids = await apply_status(conn, job_id, MISSING, observed_at, hooks)
    return PollResult(transition=transition, new_rows=0, deliveries=ids)


async def set_state(conn: aiosqlite.Connection, key: str, value: str | None) -> None:
    """Set one daemon-state value; None deletes it."""
    if value is None:
        await conn.execute("DELETE FROM state WHERE key = ?", (key,))
        return
    await conn.execute(
        "INSERT INTO state (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def event_digest(event: Mapping[str, Any]) -> str:
    """The dedupe key of an API event: a hash of (created_at, type, message)."""
    key = dumps_exact([event.get("created_at"), event.get("type"), event.get("message")])
    return hashlib.sha256(key.encode()).hexdigest()


async def record_events(
    conn: aiosqlite.Connection, job_id: str, events: Sequence[Mapping[str, Any]], now: float
) -> int:
    """Store events not seen before; return how many were new."""
    await ensure_job(conn, job_id, now)
    cur = await conn.executemany(
        "INSERT INTO events (job_id, digest, event_json, seen_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(job_id, digest) DO NOTHING",
        [(job_id, event_digest(e), dumps_exact(e), now) for e in events],
    )
    return max(cur.rowcount, 0)
