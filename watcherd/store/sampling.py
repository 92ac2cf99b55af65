"""Fast `resolution` sampling: each job's train rows carry `seq`, their API-order rank.

Train rows of one job have distinct steps, so (timestamp, step) orders them fully.
Pages nearly always arrive in order, so the writer ranks new rows as an append before
inserting them (`pages`); a row that sorts before stored ones makes it renumber the
job's train rows here (rare, linear). Reading, when
the rows inside the step and time bounds hold consecutive ranks (the usual case), the
sample is picked by rank through an index instead of numbering every row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import aiosqlite


_NUMBER: Final = (
    "UPDATE metrics SET seq = ranked.rn FROM"
    " (SELECT id, row_number() OVER (ORDER BY timestamp, step) - 1 AS rn FROM metrics"
    "  WHERE job_id = ? AND kind = 'train') AS ranked WHERE metrics.id = ranked.id"
)


async def _one(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    rows = await conn.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def renumber_train_rows(conn: aiosqlite.Connection, job_id: str) -> None:
    """Rank every train row of `job_id` afresh (a page brought rows older than stored ones)."""
    await conn.execute(_NUMBER, (job_id,))


async def _rank_range(
    conn: aiosqlite.Connection, job_id: str, where: str, params: tuple[int, ...]
) -> tuple[int, int | None, int | None]:
    """Count, lowest and highest rank of the train rows inside the bounds."""
    if not where:  # ranks are 0..n-1 by construction: two index probes, no scan
        top = await _one(
            conn,
            "SELECT MAX(seq) FROM metrics INDEXED BY metrics_train_seq"
            " WHERE job_id = ? AND kind = 'train'",
            (job_id,),
        )
        return (0, None, None) if top[0] is None else (int(top[0]) + 1, 0, int(top[0]))
    row = await _one(
        conn,
        "SELECT COUNT(*), MIN(seq), MAX(seq) FROM metrics"
        f" WHERE job_id = ? AND kind = 'train'{where}",
        (job_id, *params),
    )
    return int(row[0]), row[1], row[2]


async def sampled_json(
    conn: aiosqlite.Connection,
    job_id: str,
    where: str,
    params: tuple[int, ...],
    picks_for: Callable[[int], range | list[int]],
) -> list[str] | None:
    """Eval rows in full plus the sampled train rows, or None when every row is kept."""
    count, low, high = await _rank_range(conn, job_id, where, params)
    picks = picks_for(count)
    if isinstance(picks, range):
        return None
    if low is not None and high is not None and high - low + 1 == count:
        train = (
            "SELECT timestamp, step, id, row_json FROM metrics INDEXED BY metrics_train_seq"
            " WHERE job_id = ? AND kind = 'train' AND seq IN (SELECT value + ? FROM json_each(?))"
        )
        train_params: tuple[Any, ...] = (job_id, low, json.dumps(picks))
    else:  # ranks inside the bounds have gaps: number the kept rows in SQL
        train = (
            "SELECT timestamp, step, id, row_json FROM (SELECT timestamp, step, id, row_json,"
            " row_number() OVER (ORDER BY timestamp, step) - 1 AS rn FROM metrics"
            f" WHERE job_id = ? AND kind = 'train'{where})"
            " WHERE rn IN (SELECT value FROM json_each(?))"
        )
        train_params = (job_id, *params, json.dumps(picks))
    sql = (
        f"SELECT row_json FROM ({train} UNION ALL SELECT timestamp, step, id, row_json"
        f" FROM metrics WHERE job_id = ? AND kind = 'eval'{where}) ORDER BY timestamp, step, id"
    )
    rows = await conn.execute_fetchall(sql, (*train_params, job_id, *params))
    return [r[0] for r in rows]
