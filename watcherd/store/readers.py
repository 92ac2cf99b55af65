"""Read queries: what the CLI views and the poller ask of the database.

Each function issues a fixed, small number of queries (no per-job loops), so
`overview` stays fast for a thousand jobs and `metrics` for a million rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from watcherd.model import (
    CancelRecord,
    JobOverview,
    MetricFilter,
    MetricsSummary,
    PayloadFacts,
    Transition,
    loads_exact,
    sample_indices,
)
from watcherd.stamps import ns_in_unit_of
from watcherd.store import alerting
from watcherd.store.numbers import clamp64, text_number
from watcherd.store.sampling import sampled_json

if TYPE_CHECKING:
    import aiosqlite

    from watcherd.spend import SpendRow
    from watcherd.store.records import JobState

_OVERVIEW_COLUMNS: Final = (
    "job_id, note, watched, status, status_since, max_step, train_loss, eval_loss,"
    " seconds_remaining, last_poll_at, last_error, model, model_output_name,"
    " metrics_pending, eta_at, eta_source, reason, total_price, token_count, restart_of,"
    " (SELECT min(r.job_id) FROM jobs AS r WHERE r.restart_of = jobs.job_id)"
)
#: One row per job for `list`; the job object (a kilobyte or two of JSON) is left out.
_OVERVIEW: Final = f"SELECT {_OVERVIEW_COLUMNS} FROM jobs"
#: One job for `show`: the overview's columns, then the job object (`JOB_JSON`).
_JOB: Final = f"SELECT {_OVERVIEW_COLUMNS}, job_json FROM jobs"
JOB_JSON: Final = 21
_ORDER: Final = "ORDER BY timestamp, step, id"  # API order; id keeps arrival order on ties
#: A job's newest row timestamp, NULL without rows: one index probe per kind.
NEWEST: Final = (
    'SELECT max(t) FROM (SELECT max("timestamp") AS t FROM metrics WHERE job_id = {0}'
    """ AND kind = 'train' UNION ALL SELECT max("timestamp") FROM metrics WHERE job_id = {0}"""
    " AND kind = 'eval') AS newest"
)


async def _all(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    return list(await conn.execute_fetchall(sql, params))


#: What the poller needs of each job: its row only (the cursor is stored, see `cursor`).
JOB_STATES_SQL: Final = (
    "SELECT job_id, status, max_step, not_found_count, last_poll_at, seconds_remaining,"
    " last_error, status_since, cursor_step, metrics_pending = 1, alert_state,"
    f" {alerting.CANCEL_STATE_SQL} FROM jobs WHERE {{where}} ORDER BY added_at, job_id"
)


async def job_states(
    conn: aiosqlite.Connection, only: frozenset[str] | None = None
) -> dict[str, JobState]:
    """The scheduling state of every watched job, or of the stored jobs among `only`."""
    params: tuple[str, ...] = ()
    where = "watched = 1"
    if only is not None:
        where = "job_id IN (SELECT value FROM json_each(?))"
        params = (json.dumps(sorted(only)),)
    rows = await _all(conn, JOB_STATES_SQL.format(where=where), params)
    from watcherd.store.records import JobState  # `list` never asks: records are the poller's

    return {
        str(r[0]): JobState(
            str(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11]
        )
        for r in rows
    }


def _overview(
    row: Any,
    hooks: dict[str, int],
    open_alerts: tuple[str, ...] = (),
    cancel: CancelRecord | None = None,
) -> JobOverview:
    """An `_OVERVIEW` row as the read model: positional, in `JobOverview`'s field order
    (by keyword, binding its 24 arguments took five times as long for `list`)."""
    return JobOverview(
        row[0],  # job_id
        row[1],  # note
        bool(row[2]),  # watched
        row[3],  # status
        row[4],  # status_since
        row[5],  # step
        text_number(row[6]),  # train_loss
        text_number(row[7]),  # eval_loss
        row[8],  # seconds_remaining
        row[9],  # last_poll_at
        row[10],  # last_error
        row[11],  # model
        row[12],  # model_output_name
        hooks,
        row[16],  # reason
        row[17],  # total_price
        row[18],  # token_count
        row[19],  # restart_of
        row[20],  # restarted_as
        not row[13],  # metrics_complete: no metrics fetch pending
        open_alerts,
        row[14],  # eta_at
        row[15],  # eta_source
        cancel,
    )


async def _hook_counts(conn: aiosqlite.Connection, job_id: str | None) -> dict[str, dict[str, int]]:
    where, params = ("WHERE job_id = ?", (job_id,)) if job_id else ("", ())
    rows = await _all(
        conn,
        f"SELECT job_id, state, COUNT(*) FROM deliveries {where} GROUP BY job_id, state",
        params,
    )
    counts: dict[str, dict[str, int]] = {}
    for job, state, count in rows:
        counts.setdefault(job, {})[state] = count
    return counts


async def overview(conn: aiosqlite.Connection, *, include_unwatched: bool) -> list[JobOverview]:
    """One row per job (watched only unless asked), in the order they were added."""
    where = "" if include_unwatched else "WHERE watched = 1"
    rows = await _all(conn, f"{_OVERVIEW} {where} ORDER BY added_at, job_id")
    return await overviews(alerting.SqliteDb(conn), rows, await _hook_counts(conn, None))


async def overviews(
    db: alerting.Db, rows: Sequence[Any], counts: dict[str, dict[str, int]]
) -> list[JobOverview]:
    """`_OVERVIEW` rows as overviews with their hook counts, open alerts and cancels."""
    opened, cancels = await alerting.open_by_job(db), await alerting.cancels(db)
    return [
        _overview(r, counts.get(r[0], {}), opened.get(r[0], ()), cancels.get(r[0])) for r in rows
    ]


async def one_overview(db: alerting.Db, row: Any, counts: dict[str, dict[str, int]]) -> JobOverview:
    """One `_OVERVIEW` row as an overview with its hook counts, open alerts and cancel."""
    opened, cancel = await alerting.job_extras(db, row[0])
    return _overview(row, counts.get(row[0], {}), opened, cancel)


async def job(conn: aiosqlite.Connection, job_id: str) -> tuple[JobOverview, Any] | None:
    """One job's overview and its last job object as received (None if never fetched)."""
    rows = await _all(conn, f"{_JOB} WHERE job_id = ?", (job_id,))
    if not rows:
        return None
    found = await one_overview(alerting.SqliteDb(conn), rows[0], await _hook_counts(conn, job_id))
    raw = rows[0][JOB_JSON]
    return found, (None if raw is None else loads_exact(raw))


async def transitions(conn: aiosqlite.Connection, job_id: str) -> list[Transition]:
    """A job's status changes in the order they were observed."""
    rows = await _all(
        conn,
        "SELECT job_id, from_status, to_status, observed_at FROM transitions"
        " WHERE job_id = ? ORDER BY id",
        (job_id,),
    )
    return [Transition(*r) for r in rows]


def _bounds(flt: MetricFilter) -> tuple[str, tuple[int, ...]]:
    """SQL conditions (each starting with AND) for the step and time bounds."""
    parts = (
        ("step >= ?", flt.global_step_from),
        ("step <= ?", flt.global_step_to),
        ("timestamp >= ?", flt.logged_at_from),
        ("timestamp <= ?", flt.logged_at_to),
    )
    given = [(sql, clamp64(value)) for sql, value in parts if value is not None]
    return "".join(f" AND {sql}" for sql, _ in given), tuple(v for _, v in given)


def in_job_unit(flt: MetricFilter, newest: int | None) -> MetricFilter:
    """`flt` with its time bounds (nanoseconds) in the unit of the job's timestamps,
    read from its newest one (`watcherd.stamps`); unchanged for a job without rows."""
    if newest is None:
        return flt
    low, high = flt.logged_at_from, flt.logged_at_to
    return flt._replace(
        logged_at_from=None if low is None else ns_in_unit_of(low, newest, round_up=True),
        logged_at_to=None if high is None else ns_in_unit_of(high, newest, round_up=False),
    )


async def metrics_json(conn: aiosqlite.Connection, job_id: str, flt: MetricFilter) -> list[str]:
    """The stored JSON texts that `list_metrics` with `flt` would return, in API order."""
    if flt.logged_at_from is not None or flt.logged_at_to is not None:
        flt = in_job_unit(flt, (await _all(conn, NEWEST.format("?1"), (job_id,)))[0][0])
    where, params = _bounds(flt)
    if flt.resolution is not None:
        res = flt.resolution
        sampled = await sampled_json(conn, job_id, where, params, lambda n: sample_indices(n, res))
        if sampled is not None:
            return sampled
    rows = await _all(
        conn, f"SELECT row_json FROM metrics WHERE job_id = ?{where} {_ORDER}", (job_id, *params)
    )
    return [r[0] for r in rows]


async def summary(conn: aiosqlite.Connection, job_id: str) -> MetricsSummary:
    """Last step, last and best train/eval loss (best ignores NaN), from the job row."""
    rows = await _all(
        conn,
        "SELECT max_step, train_loss, best_train_loss, eval_loss, best_eval_loss,"
        " metrics_pending FROM jobs WHERE job_id = ?",
        (job_id,),
    )
    if not rows:
        return MetricsSummary(None, None, None, None, None)
    step, train, best_train, evl, best_eval, pending = rows[0]
    return MetricsSummary(
        step, text_number(train), best_train, text_number(evl), best_eval, complete=not pending
    )


async def get_state(conn: aiosqlite.Connection, key: str) -> str | None:
    """One daemon-state value."""
    rows = await _all(conn, "SELECT value FROM state WHERE key = ?", (key,))
    return str(rows[0][0]) if rows else None


async def state_prefixed(conn: aiosqlite.Connection, prefix: str) -> dict[str, str]:
    """Daemon-state values whose key starts with `prefix`, keyed by the rest."""
    rows = await _all(
        conn, "SELECT key, value FROM state WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
    )
    return {str(k)[len(prefix) :]: str(v) for k, v in rows}


async def events(conn: aiosqlite.Connection, job_id: str) -> list[Any]:
    """A job's stored API events in the order first seen."""
    rows = await _all(conn, "SELECT event_json FROM events WHERE job_id = ? ORDER BY id", (job_id,))
    return [loads_exact(r[0]) for r in rows]


async def delivery_counts(conn: aiosqlite.Connection) -> dict[str, int]:
    """How many hook deliveries are in each state (states with none are left out)."""
    rows = await _all(conn, "SELECT state, COUNT(*) FROM deliveries GROUP BY state")
    return {str(state): int(count) for state, count in rows}


async def payload_facts(conn: aiosqlite.Connection, job_id: str) -> PayloadFacts:
    """Reason, price, tokens, transitions, events and a sample of the train loss of a job."""
    rows = await _all(
        conn, "SELECT reason, total_price, token_count FROM jobs WHERE job_id = ?", (job_id,)
    )
    reason, price, tokens = rows[0] if rows else (None, None, None)
    from watcherd.store import facts  # hooks only; `list` and `show` do without

    texts = await metrics_json(conn, job_id, MetricFilter(resolution=facts.LOSS_POINTS))
    return PayloadFacts(
        reason=reason,
        total_price=price,
        token_count=tokens,
        transitions=tuple(await transitions(conn, job_id)),
        events=tuple(await events(conn, job_id)),
        losses=facts.train_losses(texts),
    )


async def spend(conn: aiosqlite.Connection) -> list[SpendRow]:
    """Every priced job's spend (see `watcherd.spend`), in the order they were added."""
    from watcherd.store import facts  # `cost` only

    return facts.spend_rows(await _all(conn, facts.SPEND_SQL))
