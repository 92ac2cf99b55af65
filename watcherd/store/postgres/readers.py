"""Read queries for PostgreSQL: the same answers as `watcherd.store.readers`."""

from __future__ import annotations

from typing import Any, Final

from watcherd.model import (
    JobOverview,
    MetricFilter,
    MetricsSummary,
    Transition,
    loads_exact,
    sample_indices,
)
from watcherd.store.alerting import CANCEL_STATE_SQL
from watcherd.store.cursor import settle_floor
from watcherd.store.numbers import clamp64, text_number
from watcherd.store.postgres.alerting import PgDb
from watcherd.store.postgres.sql import Conn, fetch, one
from watcherd.store.readers import (
    _JOB,
    _OVERVIEW,
    JOB_JSON,
    NEWEST,
    in_job_unit,
    one_overview,
    overviews,
)
from watcherd.store.records import JobState

_ORDER: Final = 'ORDER BY "timestamp", step, id'
_NEWEST: Final = 'SELECT max(t."timestamp") AS n FROM metrics t WHERE t.job_id = jobs.job_id'
_CURSOR: Final = (
    "SELECT min(m.step) FROM metrics m WHERE m.job_id = jobs.job_id"
    f' AND m."timestamp" > {settle_floor(_NEWEST)}'
)


async def job_states(conn: Conn, only: frozenset[str] | None = None) -> dict[str, JobState]:
    """The scheduling state of every watched job, or of the stored jobs among `only`."""
    where, params = ("watched = 1", ()) if only is None else ("job_id = ANY(%s)", (sorted(only),))
    rows = await fetch(
        conn,
        "SELECT job_id, status, max_step, not_found_count, last_poll_at, seconds_remaining,"
        f" last_error, status_since, ({_CURSOR}), metrics_pending = 1, alert_state,"
        f" {CANCEL_STATE_SQL} FROM jobs WHERE {where}"
        " ORDER BY added_at, job_id",
        params,
    )
    return {str(r[0]): JobState(*r) for r in rows}


async def _hook_counts(conn: Conn, job_id: str | None) -> dict[str, dict[str, int]]:
    where, params = ("WHERE job_id = %s", (job_id,)) if job_id else ("", ())
    rows = await fetch(
        conn,
        f"SELECT job_id, state, COUNT(*) FROM deliveries {where} GROUP BY job_id, state",
        params,
    )
    counts: dict[str, dict[str, int]] = {}
    for job, state, count in rows:
        counts.setdefault(job, {})[state] = int(count)
    return counts


async def overview(conn: Conn, *, include_unwatched: bool) -> list[JobOverview]:
    """One row per job (watched only unless asked), in the order they were added."""
    where = "" if include_unwatched else "WHERE watched = 1"
    rows = await fetch(conn, f"{_OVERVIEW} {where} ORDER BY added_at, job_id")
    return await overviews(PgDb(conn), rows, await _hook_counts(conn, None))


async def job(conn: Conn, job_id: str) -> tuple[JobOverview, Any] | None:
    """One job's overview and its last job object as received (None if never fetched)."""
    found = await one(conn, f"{_JOB} WHERE job_id = %s", (job_id,))
    if found is None:
        return None
    overview = await one_overview(PgDb(conn), found, await _hook_counts(conn, job_id))
    raw = found[JOB_JSON]
    return overview, (None if raw is None else loads_exact(raw))


async def transitions(conn: Conn, job_id: str) -> list[Transition]:
    """A job's status changes in the order they were observed."""
    rows = await fetch(
        conn,
        "SELECT job_id, from_status, to_status, observed_at FROM transitions"
        " WHERE job_id = %s ORDER BY id",
        (job_id,),
    )
    return [Transition(*r) for r in rows]


def _bounds(flt: MetricFilter) -> tuple[str, tuple[int, ...]]:
    """SQL conditions (each starting with AND) for the step and time bounds."""
    parts = (
        ("step >= %s", flt.global_step_from),
        ("step <= %s", flt.global_step_to),
        ('"timestamp" >= %s', flt.logged_at_from),
        ('"timestamp" <= %s', flt.logged_at_to),
    )
    given = [(sql, clamp64(value)) for sql, value in parts if value is not None]
    return "".join(f" AND {sql}" for sql, _ in given), tuple(v for _, v in given)


async def metrics_json(conn: Conn, job_id: str, flt: MetricFilter) -> list[str]:
    """The stored JSON texts that `list_metrics` with `flt` would return, in API order."""
    if flt.logged_at_from is not None or flt.logged_at_to is not None:
        newest = await one(conn, NEWEST.format("%s"), (job_id, job_id))
        flt = in_job_unit(flt, None if newest is None else newest[0])
    where, params = _bounds(flt)
    if flt.resolution is not None:
        sampled = await _sampled(conn, job_id, where, params, flt.resolution)
        if sampled is not None:
            return sampled
    rows = await fetch(
        conn,
        f"SELECT row_json FROM metrics WHERE job_id = %s{where} {_ORDER}",
        (job_id, *params),
    )
    return [r[0] for r in rows]


async def _sampled(
    conn: Conn, job_id: str, where: str, params: tuple[int, ...], resolution: int
) -> list[str] | None:
    """Eval rows in full plus the sampled train rows, or None when every row is kept."""
    found = await one(
        conn,
        "SELECT COUNT(*), MIN(seq), MAX(seq) FROM metrics"
        f" WHERE job_id = %s AND kind = 'train'{where}",
        (job_id, *params),
    )
    assert found is not None
    count, low, high = int(found[0]), found[1], found[2]
    picks = sample_indices(count, resolution)
    if isinstance(picks, range):
        return None
    if low is not None and high is not None and high - low + 1 == count:
        train = (
            'SELECT "timestamp", step, id, row_json FROM metrics'
            " WHERE job_id = %s AND kind = 'train' AND seq = ANY(%s::bigint[])"
        )
        train_params: tuple[Any, ...] = (job_id, [low + p for p in picks])
    else:  # ranks inside the bounds have gaps: number the kept rows in SQL
        train = (
            'SELECT "timestamp", step, id, row_json FROM (SELECT "timestamp", step, id, row_json,'
            ' row_number() OVER (ORDER BY "timestamp", step) - 1 AS rn FROM metrics'
            f" WHERE job_id = %s AND kind = 'train'{where}) AS ranked"
            " WHERE rn = ANY(%s::bigint[])"
        )
        train_params = (job_id, *params, list(picks))
    rows = await fetch(
        conn,
        f"SELECT row_json FROM ({train} UNION ALL SELECT"
        ' "timestamp", step, id, row_json FROM metrics'
        f" WHERE job_id = %s AND kind = 'eval'{where}) AS kept {_ORDER}",
        (*train_params, job_id, *params),
    )
    return [r[0] for r in rows]


async def summary(conn: Conn, job_id: str) -> MetricsSummary:
    """Last step, last and best train/eval loss (best ignores NaN), from the job row."""
    found = await one(
        conn,
        "SELECT max_step, train_loss, best_train_loss, eval_loss, best_eval_loss,"
        " metrics_pending FROM jobs WHERE job_id = %s",
        (job_id,),
    )
    if found is None:
        return MetricsSummary(None, None, None, None, None)
    step, train, best_train, evl, best_eval, pending = found
    return MetricsSummary(
        step, text_number(train), best_train, text_number(evl), best_eval, complete=not pending
    )


async def get_state(conn: Conn, key: str) -> str | None:
    """One daemon-state value."""
    found = await one(conn, "SELECT value FROM state WHERE key = %s", (key,))
    return None if found is None else str(found[0])


async def state_prefixed(conn: Conn, prefix: str) -> dict[str, str]:
    """Daemon-state values whose key starts with `prefix`, keyed by the rest."""
    rows = await fetch(
        conn, "SELECT key, value FROM state WHERE left(key, %s) = %s", (len(prefix), prefix)
    )
    return {str(k)[len(prefix) :]: str(v) for k, v in rows}


async def events(conn: Conn, job_id: str) -> list[Any]:
    """A job's stored API events in the order first seen."""
    rows = await fetch(
        conn, "SELECT event_json FROM events WHERE job_id = %s ORDER BY id", (job_id,)
    )
    return [loads_exact(r[0]) for r in rows]


async def delivery_counts(conn: Conn) -> dict[str, int]:
    """How many hook deliveries are in each state (states with none are left out)."""
    rows = await fetch(conn, "SELECT state, COUNT(*) FROM deliveries GROUP BY state")
    return {str(state): int(count) for state, count in rows}
