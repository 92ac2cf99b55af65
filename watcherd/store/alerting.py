"""Alert episodes and cancels in the database: written with the page that revealed them.

`write_evaluation` runs inside `record_poll`'s transaction: the rules' new memory,
the ETA, each opened or resolved episode and its hook deliveries, and a cancel
intent, all or nothing. Episode rows and delivery ids are deterministic, so a page
written twice (a retry after a failed group commit) adds nothing.

A cancel goes `intent` (decided; written before any call) -> `requested` (the service
accepted it) or `skipped` (the job could no longer be cancelled when we looked).
`attempts` counts calls started, each recorded before it is made. Only an `intent`
moves: a cancel settled elsewhere (a person's `watcherd cancel`) is neither counted
nor overwritten.

Both backends run these same statements through a `Db` (`?` placeholders):
`SqliteDb` here, `watcherd.store.postgres.alerting.PgDb` on PostgreSQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, Protocol, TypeVar

from watcherd.alerts.events import alert_event, parse_delivery
from watcherd.model import Alert, CancelRecord, Delivery, dumps_exact
from watcherd.store import outbox

if TYPE_CHECKING:
    import aiosqlite  # the type only: `list` reads through this module on plain sqlite3

    from watcherd.alerts.episodes import AlertChange, Evaluation
    from watcherd.alerts.rules import Finding
    from watcherd.store.records import HookLike

P = ParamSpec("P")
T = TypeVar("T")

ALERT_COLUMNS: Final = (
    "job_id, rule, episode, action, opened_at, resolved_at, details_json, resolution_json"
)
CANCEL_COLUMNS: Final = (
    "job_id, requested_by, rule, reason, decided_at, cancel_state, attempts, called_at,"
    " finished_at, last_error"
)
#: The subquery that gives a job row its cancel state (`jobs` in the outer query).
CANCEL_STATE_SQL: Final = "(SELECT c.cancel_state FROM cancels c WHERE c.job_id = jobs.job_id)"


class Db(Protocol):
    """What the alert statements need of a connection, on either backend."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Every row of one statement (`?` placeholders)."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns no rows."""

    async def enqueue(
        self, job_id: str, event: str, at: float, hooks: Sequence[HookLike], name: str
    ) -> list[str]:
        """Queue `event` for its subscribers under the delivery name `name`; new ids."""
        ...


class SqliteDb:
    """A `Db` on the SQLite store's connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Every row of one statement."""
        return list(await self.conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        await self.conn.execute(sql, params)

    async def enqueue(
        self, job_id: str, event: str, at: float, hooks: Sequence[HookLike], name: str
    ) -> list[str]:
        """The SQLite outbox's enqueue."""
        return await outbox.enqueue(self.conn, job_id, event, None, at, hooks, name=name)


def on_sqlite(
    op: Callable[Concatenate[Db, P], Awaitable[T]],
) -> Callable[Concatenate[aiosqlite.Connection, P], Awaitable[T]]:
    """`op` as a SQLite store operation (it takes the connection)."""

    @functools.wraps(op)
    async def run(conn: aiosqlite.Connection, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await op(SqliteDb(conn), *args, **kwargs)

    return run


async def write_evaluation(
    db: Db,
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
        ids += await _change(db, job_id, change, hooks)
    if evaluation.cancel is not None:
        await _intent(db, job_id, evaluation.cancel, evaluation.changes)
    return ids


async def _change(db: Db, job_id: str, change: AlertChange, hooks: Sequence[HookLike]) -> list[str]:
    """Open or resolve one episode and queue the hooks that subscribe to it."""
    details = dumps_exact(change.details)
    if change.opened:
        await db.execute(
            f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?, NULL)"
            " ON CONFLICT(job_id, rule, episode) DO NOTHING",
            (job_id, change.rule, change.episode, change.action, change.at, details),
        )
    else:
        await db.execute(
            "UPDATE alerts SET resolved_at = ?, resolution_json = ?"
            " WHERE job_id = ? AND rule = ? AND episode = ? AND resolved_at IS NULL",
            (change.at, details, job_id, change.rule, change.episode),
        )
    event = alert_event(change.rule, resolved=not change.opened)
    name = f"{event.removesuffix('.resolved')}:{change.episode}"
    name += "" if change.opened else ".resolved"
    return await db.enqueue(job_id, event, change.at, hooks, name)


async def _intent(db: Db, job_id: str, found: Finding, changes: Sequence[AlertChange]) -> None:
    """Record the decision to cancel (once per job), before any call is made."""
    at = next((c.at for c in changes if c.rule == found.rule), 0.0)
    await db.execute(
        f"INSERT INTO cancels ({CANCEL_COLUMNS}) VALUES (?, 'watcherd', ?, ?, ?, 'intent', 0,"
        " NULL, NULL, NULL) ON CONFLICT(job_id) DO NOTHING",
        (job_id, found.rule, found.message, at),
    )


async def start_cancel(db: Db, job_id: str, now: float) -> int:
    """Count a call about to be made (in its own transaction); the attempt number, or 0
    when there is no pending intent (settled meanwhile): then no call is to be made."""
    rows = await db.fetch(
        "UPDATE cancels SET attempts = attempts + 1, called_at = ?"
        " WHERE job_id = ? AND cancel_state = 'intent' RETURNING attempts",
        (now, job_id),
    )
    row = next(iter(rows), None)
    return 0 if row is None else int(row[0])


async def finish_cancel(db: Db, job_id: str, now: float, state: str, error: str | None) -> None:
    """The outcome of a pending intent: `requested`, `skipped`, or still `intent` with the
    error to retry. A cancel no longer pending is left as it is."""
    await db.execute(
        "UPDATE cancels SET cancel_state = ?, finished_at = ?, last_error = ?"
        " WHERE job_id = ? AND cancel_state = 'intent'",
        (state, None if state == "intent" else now, error, job_id),
    )


async def user_cancel(db: Db, job_id: str, now: float, reason: str) -> None:
    """A person cancelled the job (`watcherd cancel`): it supersedes a pending intent."""
    await db.execute(
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


async def alerts(db: Db, job_id: str | None, *, open_only: bool = False) -> list[Alert]:
    """Alert episodes (one job's or all), oldest first; only open ones if asked."""
    where = ["job_id = ?"] if job_id is not None else []
    if open_only:
        where.append("resolved_at IS NULL")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params = (job_id,) if job_id is not None else ()
    rows = await db.fetch(
        f"SELECT {ALERT_COLUMNS} FROM alerts {clause} ORDER BY opened_at, job_id, rule, episode",
        params,
    )
    return [to_alert(r) for r in rows]


async def open_by_job(db: Db) -> dict[str, tuple[str, ...]]:
    """Rules with an open episode, per job."""
    rows = await db.fetch(
        "SELECT job_id, rule FROM alerts WHERE resolved_at IS NULL ORDER BY job_id, opened_at"
    )
    found: dict[str, tuple[str, ...]] = {}
    for job_id, rule in rows:
        found[job_id] = (*found.get(job_id, ()), rule)
    return found


async def open_counts(db: Db) -> dict[str, int]:
    """Open episodes of watched jobs, by rule."""
    rows = await db.fetch(
        "SELECT a.rule, COUNT(*) FROM alerts a JOIN jobs j ON j.job_id = a.job_id"
        " WHERE a.resolved_at IS NULL AND j.watched = 1 GROUP BY a.rule"
    )
    return {str(rule): int(count) for rule, count in rows}


async def cancels(db: Db, job_id: str | None = None) -> dict[str, CancelRecord]:
    """Cancel records by job (one job's, or all)."""
    where, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
    rows = await db.fetch(f"SELECT {CANCEL_COLUMNS} FROM cancels {where}", params)
    return {str(r[0]): CancelRecord(*r) for r in rows}


async def job_extras(db: Db, job_id: str) -> tuple[tuple[str, ...], CancelRecord | None]:
    """One job's open alert rules and its cancel record, for its overview."""
    opened = tuple(a.rule for a in await alerts(db, job_id, open_only=True))
    return opened, (await cancels(db, job_id)).get(job_id)


async def delivery_extras(db: Db, delivery: Delivery) -> dict[str, Any]:
    """The payload's `alert`, `eta` and `cancel` parts for one delivery."""
    extras: dict[str, Any] = {}
    ref = parse_delivery(delivery.id)
    if ref is not None:
        rows = await db.fetch(
            f"SELECT {ALERT_COLUMNS} FROM alerts WHERE job_id = ? AND rule = ? AND episode = ?",
            (delivery.job_id, ref.rule, ref.episode),
        )
        found = next(iter(rows), None)
        if found is not None:
            extras["alert"] = to_alert(found)
    rows = await db.fetch(
        "SELECT eta_at, eta_source FROM jobs WHERE job_id = ?", (delivery.job_id,)
    )
    row = next(iter(rows), None)
    if row is not None and row[0] is not None:
        extras["eta"] = (float(row[0]), str(row[1]))
    record = (await cancels(db, delivery.job_id)).get(delivery.job_id)
    if record is not None:
        extras["cancel"] = record
    return extras
