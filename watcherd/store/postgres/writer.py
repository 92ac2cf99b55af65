"""Write transactions' bodies for PostgreSQL; each runs inside the caller's transaction.

The page is planned in Python exactly as on SQLite (`watcherd.store.pages`), from one
read taken after the job row is locked (`FOR UPDATE`), so two writers of one job queue
behind each other instead of ranking rows twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from watcherd.model import MISSING
from watcherd.store import alerting, pages, watchlist
from watcherd.store.postgres import eventlog, outbox
from watcherd.store.postgres.alerting import PgDb
from watcherd.store.postgres.sql import Conn, fetch, one, plain_text
from watcherd.store.records import HookLike, PollRecord, PollResult
from watcherd.store.rows import PageRows
from watcherd.store.writer import LAST_POLL_KEY, WATCH_RESTARTS, _job_fields, _metrics_fields

INSERT_METRIC: Final = (
    'INSERT INTO metrics (job_id, kind, step, "timestamp", loss, row_json, seq)'
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (job_id, kind, step) DO NOTHING"
)
ENSURE_JOB: Final = (
    "INSERT INTO jobs (job_id, watched, added_at) VALUES (%s, 0, %s)"
    " ON CONFLICT (job_id) DO NOTHING"
)
#: The row `pages.parse_stored` reads (`pages.STORED_SQL`'s, without the page index);
#: parameters: job_id, kinds[], steps[].
STORED_SQL: Final = (
    "SELECT j.job_id, j.status, j.max_step, j.best_train_loss, j.best_eval_loss,"
    " t.\"timestamp\" || ' ' || t.step || ' ' || t.seq, e.\"timestamp\" || ' ' || e.step,"
    " kept.train, kept.eval"
    " FROM (SELECT 1) AS one LEFT JOIN jobs AS j ON j.job_id = %(job)s"
    ' LEFT JOIN LATERAL (SELECT "timestamp", step, seq FROM metrics WHERE job_id = %(job)s'
    "  AND kind = 'train' AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1) AS t ON TRUE"
    ' LEFT JOIN LATERAL (SELECT "timestamp", step FROM metrics WHERE job_id = %(job)s'
    "  AND kind = 'eval' ORDER BY \"timestamp\" DESC, step DESC LIMIT 1) AS e ON TRUE"
    " LEFT JOIN LATERAL (SELECT"
    "  string_agg(m.step::text, ',') FILTER (WHERE m.kind = 'train') AS train,"
    "  string_agg(m.step::text, ',') FILTER (WHERE m.kind = 'eval') AS eval"
    "  FROM unnest(%(kinds)s::text[], %(steps)s::bigint[]) AS k(kind, step)"
    "  JOIN metrics AS m ON m.job_id = %(job)s AND m.kind = k.kind AND m.step = k.step"
    " ) AS kept ON TRUE"
)
_RENUMBER: Final = (
    "UPDATE metrics SET seq = ranked.rn FROM"
    ' (SELECT id, row_number() OVER (ORDER BY "timestamp", step) - 1 AS rn FROM metrics'
    "  WHERE job_id = %s AND kind = 'train') AS ranked WHERE metrics.id = ranked.id"
)


async def ensure_jobs(conn: Conn, job_ids: Sequence[str], now: float) -> None:
    """Create rows (unwatched) for jobs never seen; existing rows are left alone."""
    async with conn.cursor() as cur:
        await cur.executemany(ENSURE_JOB, [(job_id, now) for job_id in job_ids])


async def sync_watched(conn: Conn, entries: Sequence[tuple[str, str | None]], now: float) -> None:
    """Make exactly `entries` the watched set, with their notes; history stays."""
    await conn.execute("UPDATE jobs SET watched = 0 WHERE watched = 1")
    await change_watched(conn, entries, (), now)


async def change_watched(
    conn: Conn, add: Sequence[tuple[str, str | None]], remove: Sequence[str], now: float
) -> None:
    """Watch `add` (with their notes) and unwatch `remove`, then the jobs the service
    restarted a watched job as; other jobs stay as they are."""
    if remove:
        await conn.execute("UPDATE jobs SET watched = 0 WHERE job_id = ANY(%s)", (list(remove),))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO jobs (job_id, note, watched, added_at) VALUES (%s, %s, 1, %s)"
            " ON CONFLICT (job_id) DO UPDATE SET note = excluded.note, watched = 1",
            [(job_id, note, now) for job_id, note in add],
        )
    await conn.execute(WATCH_RESTARTS)


async def sync_source(
    conn: Conn, source: str, entries: Sequence[tuple[str, str | None]], now: float
) -> watchlist.Changes:
    """Apply what changed in one host's jobs since it last synced (see `watchlist`)."""
    key = watchlist.SOURCE_PREFIX + source
    found = await one(conn, "SELECT value FROM state WHERE key = %s FOR UPDATE", (key,))
    changes = watchlist.changes(watchlist.decode(None if found is None else str(found[0])), entries)
    await change_watched(conn, changes.watch, changes.unwatch, now)
    await set_state(conn, key, watchlist.encode(entries))
    return changes


async def _lock_job(conn: Conn, job_id: str, now: float) -> None:
    """Create the job row if missing (unwatched, added `now`) and lock it to the commit."""
    await conn.execute(ENSURE_JOB, (job_id, now))
    await conn.execute("SELECT 1 FROM jobs WHERE job_id = %s FOR UPDATE", (job_id,))


async def read_stored(conn: Conn, page: PageRows) -> pages.Stored:
    """The job row, its newest rows and which of the page's keys are stored already."""
    args = {"job": page.job_id, "kinds": list(page.kinds), "steps": list(page.steps)}
    found = await one(conn, STORED_SQL, args)
    assert found is not None  # the query always yields one row
    return pages.parse_stored(found)


async def record_poll(conn: Conn, rec: PollRecord, page: PageRows) -> PollResult:
    """Rows, job fields, transition and outbox for one fetched page.

    `page` holds the page's rows as `rows.page_rows` gives them (from decoded rows or
    the API client's records), planned exactly as on SQLite.
    """
    await _lock_job(conn, rec.job_id, rec.observed_at)
    stored = await read_stored(conn, page)
    plan = pages.plan_page(stored, page)
    if plan.inserts:
        async with conn.cursor() as cur:
            plain_text(cur)  # job ID, kind and each row's JSON text: never a NUL
            await cur.executemany(INSERT_METRIC, plan.inserts)
    if plan.renumber:
        await conn.execute(_RENUMBER, (rec.job_id,))
    fields = plan.fields | _job_fields(rec) | _metrics_fields(rec, stored.status)
    fields.update(last_poll_at=rec.observed_at, not_found_count=0)
    transition, ids = None, []
    if rec.status is not None and rec.status != stored.status:
        fields.update(status=rec.status, status_since=rec.observed_at)
        ids = await record_transition(
            conn, rec.job_id, stored.status, rec.status, rec.observed_at, rec.hooks
        )
        transition = (stored.status, rec.status)
    if rec.evaluation is not None:
        ids += await alerting.write_evaluation(
            PgDb(conn), rec.job_id, rec.evaluation, rec.hooks, fields
        )
    new = await eventlog.poll_events(conn, rec, rec.status or stored.status, transition, fields)
    await _update_job(conn, rec.job_id, fields)
    await set_state(conn, LAST_POLL_KEY, repr(rec.observed_at))
    restarts = await eventlog.follow_restarts(conn, rec, new)
    return PollResult(
        transition=transition,
        new_rows=len(plan.inserts),
        deliveries=ids,
        new_events=len(new),
        restarts=restarts,
    )


async def _update_job(conn: Conn, job_id: str, fields: Mapping[str, Any]) -> None:
    """Set `fields` on the (existing) job row; column names come from this package only."""
    assignments = ", ".join(f"{name} = %s" for name in fields)
    await conn.execute(
        f"UPDATE jobs SET {assignments} WHERE job_id = %s",
        (*fields.values(), job_id),
    )


async def record_transition(
    conn: Conn,
    job_id: str,
    previous: str | None,
    status: str,
    observed_at: float,
    hooks: Sequence[HookLike],
) -> list[str]:
    """The transition row and the outbox rows of a status change; returns new delivery ids."""
    await conn.execute(
        "INSERT INTO transitions (job_id, from_status, to_status, observed_at)"
        " VALUES (%s, %s, %s, %s)",
        (job_id, previous, status, observed_at),
    )
    return await outbox.enqueue(conn, job_id, status, previous, observed_at, hooks)


async def record_failure(
    conn: Conn, job_id: str, observed_at: float, error: str, *, not_found: bool
) -> int:
    """Note a failed poll; count 404s in a row when `not_found`. Returns that count."""
    found = await one(
        conn,
        "INSERT INTO jobs (job_id, watched, added_at, last_error, last_error_at, not_found_count)"
        " VALUES (%s, 0, %s, %s, %s, %s) ON CONFLICT (job_id) DO UPDATE SET"
        " last_error = excluded.last_error, last_error_at = excluded.last_error_at,"
        " not_found_count = jobs.not_found_count + excluded.not_found_count"
        " RETURNING not_found_count",
        (job_id, observed_at, error, observed_at, 1 if not_found else 0),
    )
    return int(found[0]) if found else 0


async def mark_missing(
    conn: Conn, job_id: str, observed_at: float, hooks: Sequence[HookLike]
) -> PollResult:
    """Transition the job to `missing` (a watcherd status) and queue its hooks."""
    await _lock_job(conn, job_id, observed_at)
    found = await one(conn, "SELECT status FROM jobs WHERE job_id = %s", (job_id,))
    previous = None if found is None else found[0]
    if previous == MISSING:
        return PollResult()
    ids = await record_transition(conn, job_id, previous, MISSING, observed_at, hooks)
    await _update_job(conn, job_id, {"status": MISSING, "status_since": observed_at})
    return PollResult(transition=(previous, MISSING), new_rows=0, deliveries=ids)


async def set_state(conn: Conn, key: str, value: str | None) -> None:
    """Set one daemon-state value; None deletes it."""
    if value is None:
        await conn.execute("DELETE FROM state WHERE key = %s", (key,))
        return
    await conn.execute(
        "INSERT INTO state (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


#: A stored value that is a plain decimal number (compared as one; anything else is replaced).
_NUMBER: Final = r"^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$"


async def raise_state_number(conn: Conn, key: str, value: float) -> None:
    """Set a numeric daemon-state value unless a higher one is stored: one statement, so
    two daemons raising it at once keep the higher."""
    await conn.execute(
        "INSERT INTO state (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
        " SET value = excluded.value WHERE CASE WHEN state.value ~ %s"
        " THEN state.value::float8 < excluded.value::float8 ELSE true END",
        (key, repr(value), _NUMBER),
    )


async def delete_state_prefixed(conn: Conn, prefix: str) -> dict[str, str]:
    """Delete the daemon-state values whose key starts with `prefix`; return them by the rest."""
    rows = await fetch(
        conn,
        "DELETE FROM state WHERE left(key, %s) = %s RETURNING key, value",
        (len(prefix), prefix),
    )
    return {str(k)[len(prefix) :]: str(v) for k, v in rows}
