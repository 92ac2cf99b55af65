"""Write transactions' bodies. Each function runs inside the caller's BEGIN IMMEDIATE."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from watcherd.eventlog import reason
from watcherd.model import MISSING, dumps_exact, is_terminal, loads_exact
from watcherd.spend import BUDGET_EXCEEDED, Period
from watcherd.store import alerting, cursor, facts, outbox, pages, readers
from watcherd.store.numbers import number
from watcherd.store.records import HookLike, PollRecord, PollResult
from watcherd.store.rows import PageRows
from watcherd.store.sampling import renumber_train_rows

if TYPE_CHECKING:
    import aiosqlite

LAST_POLL_KEY: Final = "last_poll_ok_at"

INSERT_METRIC: Final = (
    "INSERT INTO metrics (job_id, kind, step, timestamp, loss, row_json, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job_id, kind, step) DO NOTHING"
)


async def fetch_one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first row of a query, or None (one trip to the database thread)."""
    rows = await conn.execute_fetchall(sql, params)
    return next(iter(rows), None)


_ENSURE_JOB: Final = (
    "INSERT INTO jobs (job_id, watched, added_at) VALUES (?, 0, ?) ON CONFLICT(job_id) DO NOTHING"
)


async def ensure_jobs(conn: aiosqlite.Connection, job_ids: Sequence[str], now: float) -> None:
    """Create rows (unwatched) for jobs never seen; existing rows are left alone."""
    await conn.executemany(_ENSURE_JOB, [(job_id, now) for job_id in job_ids])


#: Jobs that continue a watched job (restarts of restarts too) stay watched.
WATCH_RESTARTS: Final = (
    "WITH RECURSIVE chain(job_id) AS (SELECT job_id FROM jobs WHERE watched = 1"
    " UNION SELECT j.job_id FROM jobs AS j JOIN chain AS c ON j.restart_of = c.job_id)"
    " UPDATE jobs SET watched = 1 WHERE watched = 0 AND job_id IN (SELECT job_id FROM chain)"
)


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
    await conn.execute(WATCH_RESTARTS)


async def change_watched(
    conn: aiosqlite.Connection,
    add: Sequence[tuple[str, str | None]],
    remove: Sequence[str],
    now: float,
) -> None:
    """Watch `add` (with their notes) and unwatch `remove`, then the jobs the service
    restarted a watched job as; other jobs stay as they are."""
    await conn.executemany("UPDATE jobs SET watched = 0 WHERE job_id = ?", [(j,) for j in remove])
    await conn.executemany(
        "INSERT INTO jobs (job_id, note, watched, added_at) VALUES (?, ?, 1, ?)"
        " ON CONFLICT(job_id) DO UPDATE SET note = excluded.note, watched = 1",
        [(job_id, note, now) for job_id, note in add],
    )
    await conn.execute(WATCH_RESTARTS)


#: One page to record: the poll and its rows (`rows.page_rows` of its metrics and records).
Page = tuple[PollRecord, PageRows]


async def record_poll(conn: aiosqlite.Connection, rec: PollRecord, page: PageRows) -> PollResult:
    """Rows, job fields, transition, events and outbox for one fetched page.

    `page` holds the page's rows as `rows.page_rows` gives them.

    Four trips to the database thread when the status holds and no events came: read
    what is stored, insert the new rows (ranked), update the job (and its stored
    cursor, when rows came), note the poll time.
    """
    (result,) = await record_polls(conn, [(rec, page)])
    return result


async def record_polls(conn: aiosqlite.Connection, batch: Sequence[Page]) -> list[PollResult]:
    """Pages of distinct jobs in the caller's transaction, each whole, in few trips.

    What is stored for each page is read in one query (`_plan_all`); then the new
    rows of all of them go in one `executemany`, the job rows in one per set of
    columns, and the poll time once. Two pages of one job are recorded one after the
    other instead.
    """
    if len({rec.job_id for rec, _ in batch}) < len(batch):
        return [await record_poll(conn, *page) for page in batch]
    planned = await _plan_all(conn, batch)
    if any(plan.inserts for _, _, plan in planned):
        inserts = itertools.chain.from_iterable(plan.inserts for _, _, plan in planned)
        await conn.executemany(INSERT_METRIC, inserts)
    results = await _job_rows(conn, planned)
    if batch:
        await set_state(conn, LAST_POLL_KEY, repr(max(rec.observed_at for rec, _ in batch)))
    return results


Planned = tuple[PollRecord, pages.Stored, pages.PagePlan]


async def _plan_all(conn: aiosqlite.Connection, batch: Sequence[Page]) -> list[Planned]:
    """Each page's plan, from one read of what is stored for all of them (`pages.STORED_SQL`).

    One statement for the batch: each statement costs a trip through the GIL, which the
    event loop's thread holds most of the time while a round runs.
    """
    stored = await read_stored(conn, [page for _, page in batch])
    return [
        (rec, found, pages.plan_page(found, page))
        for (rec, page), found in zip(batch, stored, strict=True)
    ]


async def read_stored(conn: aiosqlite.Connection, batch: Sequence[PageRows]) -> list[pages.Stored]:
    """What is stored for each page (its job row, newest rows, keys in its range), in order."""
    rows = await conn.execute_fetchall(pages.STORED_SQL, (pages.batch_param(batch),))
    return [pages.parse_stored(row[1:]) for row in sorted(rows, key=itemgetter(0))]


async def _job_rows(conn: aiosqlite.Connection, planned: Sequence[Planned]) -> list[PollResult]:
    """Renumbering, transitions, alerts, events and outbox rows, then every job row
    (grouped updates), then the restarts the new events announce."""
    updates: dict[str, list[tuple[Any, ...]]] = {}
    results = []
    for rec, stored, plan in planned:
        if plan.renumber:
            await renumber_train_rows(conn, rec.job_id)
        fields = plan.fields | _job_fields(rec) | _metrics_fields(rec, stored.status)
        fields.update(last_poll_at=rec.observed_at, not_found_count=0)
        transition, ids = await _status_change(conn, rec, stored.status, fields)
        if rec.evaluation is not None:
            ids += await alerting.write_evaluation(
                alerting.SqliteDb(conn), rec.job_id, rec.evaluation, rec.hooks, fields
            )
        new = await _poll_events(conn, rec, stored, transition, fields)  # the job row exists now
        sql, args = _update_job(rec.job_id, fields, rows=bool(plan.inserts))
        updates.setdefault(sql, []).append(args)
        restarts = facts.restart_targets(new, rec.job_id)
        for target in restarts:
            await follow_restart(conn, rec.job_id, target, rec.observed_at)
        results.append(PollResult(transition, len(plan.inserts), ids, len(new), restarts))
    for sql, args_list in updates.items():
        await conn.executemany(sql, args_list)
    return results


async def record_rows(
    conn: aiosqlite.Connection,
    page: PageRows,
    now: float,
    alert_state: str,
) -> int:
    """One batch of a big page's rows and the job fields they change; returns new rows.

    The status, the transition, the alert episodes and the hook outbox wait for the
    page's last batch (`record_poll`), so they are written once every row before them
    is stored; `alert_state` (the rules' memory with this batch's rows folded in) is
    written with the rows, so a kill between batches loses none of them to the rules.
    """
    stored, plan = await _insert_rows(conn, page)
    fields = plan.fields | {"alert_state": alert_state}
    await _write_job(conn, page.job_id, now, fields, exists=stored.exists, rows=bool(plan.inserts))
    return len(plan.inserts)


async def _insert_rows(
    conn: aiosqlite.Connection, page: PageRows
) -> tuple[pages.Stored, pages.PagePlan]:
    """Read what is stored, insert the rows not stored yet (ranked); the plan's fields."""
    (stored,) = await read_stored(conn, [page])
    plan = pages.plan_page(stored, page)
    if plan.inserts:
        await conn.executemany(INSERT_METRIC, plan.inserts)
    if plan.renumber:
        await renumber_train_rows(conn, page.job_id)
    return stored, plan


async def _poll_events(
    conn: aiosqlite.Connection,
    rec: PollRecord,
    stored: pages.Stored,
    transition: object,
    fields: dict[str, Any],
) -> list[Mapping[str, Any]]:
    """A poll's new events stored (the job row made first), and its job's `reason` added
    to `fields` when it may change."""
    if not stored.exists:
        await conn.execute(_ENSURE_JOB, (rec.job_id, rec.observed_at))
    new = await insert_events(conn, rec.job_id, rec.events or (), rec.observed_at)
    status = rec.status or stored.status
    if facts.wants_reason(status, new, transition, rec.job):
        fields["reason"] = await _reason(conn, rec, status)
    return new


async def follow_restart(conn: aiosqlite.Connection, old: str, new: str, now: float) -> None:
    """Record that `new` continues `old`: watched as `old` is, with a note pointing back."""
    await conn.execute(
        "INSERT INTO jobs (job_id, note, watched, added_at, restart_of)"
        " SELECT ?, ?, watched, ?, job_id FROM jobs WHERE job_id = ?"
        " ON CONFLICT(job_id) DO UPDATE SET"
        " restart_of = COALESCE(jobs.restart_of, excluded.restart_of),"
        " watched = MAX(jobs.watched, excluded.watched)",
        (new, f"restart of {old}", now, old),
    )


async def _reason(conn: aiosqlite.Connection, rec: PollRecord, status: str | None) -> str | None:
    """Why the job ended, from its job object (this one, or the stored one) and events."""
    rows = await conn.execute_fetchall(
        "SELECT event_json FROM events WHERE job_id = ? ORDER BY id", (rec.job_id,)
    )
    job = rec.job
    if job is None:
        found = await fetch_one(conn, "SELECT job_json FROM jobs WHERE job_id = ?", (rec.job_id,))
        job = loads_exact(found[0]) if found is not None and found[0] is not None else None
    return reason(status, job, [loads_exact(r[0]) for r in rows])


async def _status_change(
    conn: aiosqlite.Connection, rec: PollRecord, previous: str | None, fields: dict[str, Any]
) -> tuple[tuple[str | None, str] | None, list[str]]:
    """Write the transition and outbox rows if the status changed; add its job fields."""
    if rec.status is None or rec.status == previous:
        return None, []
    fields.update(status=rec.status, status_since=rec.observed_at)
    ids = await record_transition(
        conn, rec.job_id, previous, rec.status, rec.observed_at, rec.hooks
    )
    return (previous, rec.status), ids


def _metrics_fields(rec: PollRecord, stored_status: str | None) -> dict[str, Any]:
    """The error columns, and whether a finished job still owes its metrics."""
    status = rec.status or stored_status
    if rec.metrics_error is None:
        return {"last_error": None, "metrics_pending": 0}
    return {
        "last_error": f"metrics: {rec.metrics_error}",
        "last_error_at": rec.observed_at,
        "metrics_pending": int(status is not None and is_terminal(status)),
    }


def _job_fields(rec: PollRecord) -> dict[str, Any]:
    """Job columns taken from the job object (when one came) and the progress estimate."""
    remaining = rec.seconds_remaining
    price = facts.price_fields(rec.total_price, rec.token_count, rec.job, rec.observed_at)
    if rec.job is None:  # a status-only sighting: its estimate (or None) is the latest word
        return {"seconds_remaining": remaining, **price}
    progress = rec.job.get("progress")
    if remaining is None and isinstance(progress, Mapping) and progress.get("estimate_available"):
        remaining = number(progress.get("seconds_remaining"))
    return {
        "seconds_remaining": remaining,
        "job_json": dumps_exact(rec.job),
        "model": _text(rec.job.get("model")),
        "model_output_name": _text(rec.job.get("model_output_name")),
        **price,
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def _write_job(
    conn: aiosqlite.Connection,
    job_id: str,
    now: float,
    fields: Mapping[str, Any],
    *,
    exists: bool,
    rows: bool = False,
) -> None:
    """Set `fields` on the job row, creating it (unwatched, added `now`) if missing.

    With `rows` (the page stored new rows) the job's settled cursor is recomputed too.
    """
    # Column names come from this module only, never from input.
    if exists:
        await conn.execute(*_update_job(job_id, fields, rows=rows))
        return
    names = ", ".join(fields)
    marks = ", ?" * len(fields)
    sql = f"INSERT INTO jobs (job_id, watched, added_at, {names}) VALUES (?, 0, ?{marks})"
    await conn.execute(sql, (job_id, now, *fields.values()))
    if rows:
        await conn.execute(cursor.UPDATE, (job_id,))


def _update_job(
    job_id: str, fields: Mapping[str, Any], *, rows: bool
) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE that sets `fields` on the job row (and its settled cursor after new
    rows), and its parameters."""
    assignments = [f"{name} = ?" for name in fields]
    if rows:
        assignments.append(f"cursor_step = {cursor.SETTLED}")
    sql = f"UPDATE jobs SET {', '.join(assignments)} WHERE job_id = ?"
    return sql, (*fields.values(), job_id)


async def record_transition(
    conn: aiosqlite.Connection,
    job_id: str,
    previous: str | None,
    status: str,
    observed_at: float,
    hooks: Sequence[HookLike],
) -> list[str]:
    """The transition row and the outbox rows of a status change; returns new delivery ids.

    The caller sets the job's `status` and `status_since`.
    """
    await conn.execute(
        "INSERT INTO transitions (job_id, from_status, to_status, observed_at) VALUES (?, ?, ?, ?)",
        (job_id, previous, status, observed_at),
    )
    return await outbox.enqueue(conn, job_id, status, previous, observed_at, hooks)


async def record_failure(
    conn: aiosqlite.Connection, job_id: str, observed_at: float, error: str, *, not_found: bool
) -> int:
    """Note a failed poll; count 404s in a row when `not_found`. Returns that count."""
    found = await fetch_one(
        conn,
        "INSERT INTO jobs (job_id, watched, added_at, last_error, last_error_at, not_found_count)"
        " VALUES (?, 0, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET"
        " last_error = excluded.last_error, last_error_at = excluded.last_error_at,"
        " not_found_count = not_found_count + excluded.not_found_count"
        " RETURNING not_found_count",
        (job_id, observed_at, error, observed_at, 1 if not_found else 0),
    )
    return int(found[0]) if found else 0


async def mark_missing(
    conn: aiosqlite.Connection, job_id: str, observed_at: float, hooks: Sequence[HookLike]
) -> PollResult:
    """Transition the job to `missing` (a watcherd status) and queue its hooks."""
    found = await fetch_one(conn, "SELECT status FROM jobs WHERE job_id = ?", (job_id,))
    previous = None if found is None else found[0]
    if previous == MISSING:
        return PollResult()
    ids = await record_transition(conn, job_id, previous, MISSING, observed_at, hooks)
    fields = {"status": MISSING, "status_since": observed_at}
    await _write_job(conn, job_id, observed_at, fields, exists=found is not None)
    return PollResult(transition=(previous, MISSING), new_rows=0, deliveries=ids)


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


async def insert_events(
    conn: aiosqlite.Connection, job_id: str, events: Sequence[Mapping[str, Any]], now: float
) -> list[Mapping[str, Any]]:
    """Store the events not stored before (by `eventlog.event_keys`); return those, in order.

    The caller makes sure the job row exists.
    """
    if not events:
        return []
    rows = await conn.execute_fetchall("SELECT digest FROM events WHERE job_id = ?", (job_id,))
    fresh = facts.fresh_events(events, (str(r[0]) for r in rows))
    await conn.executemany(
        "INSERT INTO events (job_id, digest, event_json, seen_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(job_id, digest) DO NOTHING",
        [(job_id, key, dumps_exact(event), now) for key, event in fresh],
    )
    return [event for _, event in fresh]


async def delete_state_prefixed(conn: aiosqlite.Connection, prefix: str) -> dict[str, str]:
    """Delete the daemon-state values whose key starts with `prefix`; return them by the rest."""
    rows = await conn.execute_fetchall(
        "DELETE FROM state WHERE substr(key, 1, ?) = ? RETURNING key, value", (len(prefix), prefix)
    )
    return {str(k)[len(prefix) :]: str(v) for k, v in rows}


async def record_events(
    conn: aiosqlite.Connection, job_id: str, events: Sequence[Mapping[str, Any]], now: float
) -> int:
    """Store events not seen before; return how many were new."""
    await conn.execute(_ENSURE_JOB, (job_id, now))
    return len(await insert_events(conn, job_id, events, now))


async def fire_budget(
    conn: aiosqlite.Connection,
    limits: Sequence[tuple[Period, int]],
    hooks: Sequence[HookLike],
    now: float,
) -> list[str]:
    """Queue `budget.exceeded` for each period whose spend is over its limit (nano-dollars).

    The delivery id names the period (`budget:daily:2026-05-19:budget.exceeded:HOOK`),
    so each period fires once, whatever restarts come between.
    """
    rows = await readers.spend(conn)
    ids: list[str] = []
    for period in facts.over_limit(rows, limits):
        ids += await outbox.enqueue(conn, period.source, BUDGET_EXCEEDED, None, now, hooks)
    return ids
