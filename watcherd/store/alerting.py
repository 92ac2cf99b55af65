"""Alert episodes and cancels in the database: written with the page that revealed them.

`write_evaluation` runs inside `record_poll`'s transaction: the rules' new memory,
the ETA, each opened or resolved episode and its hook deliveries, and a cancel
intent, all or nothing. Episode rows and delivery ids are deterministic, so a page
written twice (a retry after a failed group commit) adds nothing.

A cancel goes `intent` (decided; written before any call) -> `requested` (the service
accepted it) or `skipped` (the job could no longer be cancelled when we looked).
`attempts` counts calls started, each recorded before it is made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import aiosqlite

from watcherd.alerts.events import alert_event, parse_delivery
from watcherd.model import Alert, CancelRecord, Delivery, dumps_exact
from watcherd.store import outbox
from watcherd.store.records import HookLike

if TYPE_CHECKING:
    from watcherd.alerts.episodes import AlertChange, Evaluation
    from watcherd.alerts.rules import Finding

ALERT_COLUMNS: Final = (
    "job_id, rule, episode, action, opened_at, resolved_at, details_json, resolution_json"
)
CANCEL_COLUMNS: Final = (
    "job_id, requested_by, rule, reason, decided_at, cancel_state, attempts, called_at,"
    " finished_at, last_error"
)


async def write_evaluation(
    conn: aiosqlite.Connection,
    job_id: str,
    evaluation: Evaluation,
    hooks: Sequence[HookLike],
    fields: dict[str, Any],
) -> list[str]:
    """Episodes, their deliveries and a cancel intent; adds the job fields. New delivery ids."""
    eta = evaluation.eta
    fields.update(
        alert_state=evaluation.state.to_json(),
        eta_at=None if eta is None else eta.at,
        eta_source=None if eta is None else eta.source,
    )
    ids: list[str] = []
    for change in evaluation.changes:
        ids += await _change(conn, job_id, change, hooks)
    if evaluation.cancel is not None:
        await _intent(conn, job_id, evaluation.cancel, evaluation.changes)
    return ids


async def _change(
    conn: aiosqlite.Connection, job_id: str, change: AlertChange, hooks: Sequence[HookLike]
) -> list[str]:
    """Open or resolve one episode and queue the hooks that subscribe to it."""
    details = dumps_exact(change.details)
    if change.opened:
        await conn.execute(
            f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?, NULL)"
            " ON CONFLICT(job_id, rule, episode) DO NOTHING",
            (job_id, change.rule, change.episode, change.action, change.at, details),
        )
    else:
        await conn.execute(
            "UPDATE alerts SET resolved_at = ?, resolution_json = ?"
            " WHERE job_id = ? AND rule = ? AND episode = ? AND resolved_at IS NULL",
            (change.at, details, job_id, change.rule, change.episode),
        )
    event = alert_event(change.rule, resolved=not change.opened)
    name = f"{event.removesuffix('.resolved')}:{change.episode}"
    name += "" if change.opened else ".resolved"
    return await outbox.enqueue(conn, job_id, event, None, change.at, hooks, name=name)


async def _intent(
    conn: aiosqlite.Connection, job_id: str, found: Finding, changes: Sequence[AlertChange]
) -> None:
    """Record the decision to cancel (once per job), before any call is made."""
    at = next((c.at for c in changes if c.rule == found.rule), 0.0)
    await conn.execute(
        f"INSERT INTO cancels ({CANCEL_COLUMNS}) VALUES (?, 'watcherd', ?, ?, ?, 'intent', 0,"
        " NULL, NULL, NULL) ON CONFLICT(job_id) DO NOTHING",
        (job_id, found.rule, found.message, at),
    )


async def start_cancel(conn: aiosqlite.Connection, job_id: str, now: float) -> int:
    """Count a call about to be made (in its own transaction); returns the attempt number."""
    rows = await conn.execute_fetchall(
        "UPDATE cancels SET attempts = attempts + 1, called_at = ? WHERE job_id = ?"
        " RETURNING attempts",
        (now, job_id),
    )
    row = next(iter(rows), None)
    return 0 if row is None else int(row[0])


async def finish_cancel(
    conn: aiosqlite.Connection, job_id: str, now: float, state: str, error: str | None
) -> None:
    """The outcome: `requested`, `skipped`, or still `intent` with the error to retry."""
    await conn.execute(
        "UPDATE cancels SET cancel_state = ?, finished_at = ?, last_error = ? WHERE job_id = ?",
        (state, None if state == "intent" else now, error, job_id),
    )


async def user_cancel(conn: aiosqlite.Connection, job_id: str, now: float, reason: str) -> None:
    """A person cancelled the job (`watcherd cancel`): it supersedes a pending intent."""
    await conn.execute(
        f"INSERT INTO cancels ({CANCEL_COLUMNS}) VALUES (?, 'user', NULL, ?, ?, 'requested', 1,"
        " ?, ?, NULL) ON CONFLICT(job_id) DO UPDATE SET requested_by = 'user', rule = NULL,"
        " reason = excluded.reason, cancel_state = 'requested', attempts = cancels.attempts + 1,"
        " called_at = excluded.called_at, finished_at = excluded.finished_at, last_error = NULL"
        " WHERE cancels.cancel_state != 'requested'",
        (job_id, reason, now, now, now),
    )


# -- reading ------------------------------------------------------------------------


def to_alert(row: Sequence[Any]) -> Alert:
    """An `alerts` row (selected with ALERT_COLUMNS) as the read model."""
    details = json.loads(row[6]) if row[6] else {}
    if row[7]:
        details["resolution"] = json.loads(row[7])
    return Alert(row[0], row[1], int(row[2]), row[3], row[4], row[5], details)


async def alerts(
    conn: aiosqlite.Connection, job_id: str | None, *, open_only: bool = False
) -> list[Alert]:
    """Alert episodes (one job's or all), oldest first; only open ones if asked."""
    where = ["job_id = ?"] if job_id is not None else []
    if open_only:
        where.append("resolved_at IS NULL")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params = (job_id,) if job_id is not None else ()
    rows = await conn.execute_fetchall(
        f"SELECT {ALERT_COLUMNS} FROM alerts {clause} ORDER BY opened_at, job_id, rule, episode",
        params,
    )
    return [to_alert(r) for r in rows]


async def open_by_job(conn: aiosqlite.Connection) -> dict[str, tuple[str, ...]]:
    """Rules with an open episode, per job."""
    rows = await conn.execute_fetchall(
        "SELECT job_id, rule FROM alerts WHERE resolved_at IS NULL ORDER BY job_id, opened_at"
    )
    found: dict[str, tuple[str, ...]] = {}
    for job_id, rule in rows:
        found[job_id] = (*found.get(job_id, ()), rule)
    return found


async def open_counts(conn: aiosqlite.Connection) -> dict[str, int]:
    """Open episodes of watched jobs, by rule."""
    rows = await conn.execute_fetchall(
        "SELECT a.rule, COUNT(*) FROM alerts a JOIN jobs j ON j.job_id = a.job_id"
        " WHERE a.resolved_at IS NULL AND j.watched = 1 GROUP BY a.rule"
    )
    return {str(rule): int(count) for rule, count in rows}


async def cancels(conn: aiosqlite.Connection, job_id: str | None = None) -> dict[str, CancelRecord]:
    """Cancel records by job (one job's, or all)."""
    where, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
    rows = await conn.execute_fetchall(f"SELECT {CANCEL_COLUMNS} FROM cancels {where}", params)
    return {str(r[0]): CancelRecord(*r) for r in rows}


async def delivery_extras(conn: aiosqlite.Connection, delivery: Delivery) -> dict[str, Any]:
    """The payload's `alert`, `eta` and `cancel` parts for one delivery."""
    extras: dict[str, Any] = {}
    ref = parse_delivery(delivery.id)
    if ref is not None:
        rows = await conn.execute_fetchall(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE job_id = ? AND rule = ? AND episode = ?",
            (delivery.job_id, ref.rule, ref.episode),
        )
        found = next(iter(rows), None)
        if found is not None:
            extras["alert"] = to_alert(found)
    rows = await conn.execute_fetchall(
        "SELECT eta_at, eta_source FROM jobs WHERE job_id = ?", (delivery.job_id,)
    )
    row = next(iter(rows), None)
    if row is not None and row[0] is not None:
        extras["eta"] = (float(row[0]), str(row[1]))
    record = (await cancels(conn, delivery.job_id)).get(delivery.job_id)
    if record is not None:
        extras["cancel"] = record
    return extras
