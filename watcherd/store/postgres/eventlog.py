"""Event logs, reasons, restarts, spend and the budget on PostgreSQL.

The decisions are `watcherd.store.facts`', shared with SQLite; this module holds the
PostgreSQL statements. In a cluster each poll's events are written in that poll's
transaction, after its job row is locked and its lease checked (`core._fenced`), and
the `(job_id, digest)` key keeps every event once whichever daemon wrote it. A budget
period's deliveries carry the period in their id, so however many daemons check it,
one insert wins and the period fires once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from watcherd.eventlog import reason
from watcherd.model import MetricFilter, PayloadFacts, dumps_exact, loads_exact
from watcherd.spend import BUDGET_EXCEEDED, Period, SpendRow
from watcherd.store import facts
from watcherd.store.postgres import outbox, readers
from watcherd.store.postgres.sql import Conn, fetch, one
from watcherd.store.records import HookLike, PollRecord

Event = Mapping[str, Any]

_INSERT: Final = (
    "INSERT INTO events (job_id, digest, event_json, seen_at)"
    " SELECT %s, d, e, %s FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS u(d, e, n)"
    " ORDER BY n ON CONFLICT (job_id, digest) DO NOTHING RETURNING digest"
)
_FOLLOW: Final = (
    "INSERT INTO jobs (job_id, note, watched, added_at, restart_of)"
    " SELECT %s, %s, watched, %s, job_id FROM jobs WHERE job_id = %s"
    " ON CONFLICT (job_id) DO UPDATE SET"
    " restart_of = COALESCE(jobs.restart_of, excluded.restart_of),"
    " watched = GREATEST(jobs.watched, excluded.watched)"
)


async def insert_events(
    conn: Conn, job_id: str, events: Sequence[Event], now: float
) -> list[Event]:
    """Store the events not stored before; return those, in API order.

    The caller holds the job row. Only the keys this insert wrote count as new, so a
    row another writer stored first is never reported (or followed) twice.
    """
    if not events:
        return []
    rows = await fetch(conn, "SELECT digest FROM events WHERE job_id = %s", (job_id,))
    fresh = facts.fresh_events(events, (str(r[0]) for r in rows))
    if not fresh:
        return []
    keys, texts = [k for k, _ in fresh], [dumps_exact(e) for _, e in fresh]
    written = {str(r[0]) for r in await fetch(conn, _INSERT, (job_id, now, keys, texts))}
    return [event for key, event in fresh if key in written]


async def record_events(conn: Conn, job_id: str, events: Sequence[Event], now: float) -> int:
    """Store events not seen before (creating the job row); return how many were new."""
    await conn.execute(
        "INSERT INTO jobs (job_id, watched, added_at) VALUES (%s, 0, %s)"
        " ON CONFLICT (job_id) DO NOTHING",
        (job_id, now),
    )
    return len(await insert_events(conn, job_id, events, now))


async def poll_events(
    conn: Conn, rec: PollRecord, status: str | None, transition: object, fields: dict[str, Any]
) -> list[Event]:
    """A poll's events stored, and its job's `reason` added to `fields` when it may change."""
    new = await insert_events(conn, rec.job_id, rec.events or (), rec.observed_at)
    if facts.wants_reason(status, new, transition, rec.job):
        fields["reason"] = await _reason(conn, rec, status)
    return new


async def _reason(conn: Conn, rec: PollRecord, status: str | None) -> str | None:
    """Why the job ended, from its job object (this one, or the stored one) and events."""
    job = rec.job
    if job is None:
        found = await one(conn, "SELECT job_json FROM jobs WHERE job_id = %s", (rec.job_id,))
        job = loads_exact(found[0]) if found is not None and found[0] is not None else None
    return reason(status, job, await readers.events(conn, rec.job_id))


async def follow_restarts(conn: Conn, rec: PollRecord, new: Sequence[Event]) -> tuple[str, ...]:
    """Watch the jobs new `job_restarted` events name, as `rec`'s job is; their IDs."""
    restarts = facts.restart_targets(new, rec.job_id)
    for target in restarts:
        note = f"restart of {rec.job_id}"
        await conn.execute(_FOLLOW, (target, note, rec.observed_at, rec.job_id))
    return restarts


async def spend(conn: Conn) -> list[SpendRow]:
    """Every priced job's spend (see `watcherd.spend`), in the order they were added."""
    return facts.spend_rows(await fetch(conn, facts.SPEND_SQL))


async def fire_budget(
    conn: Conn, limits: Sequence[tuple[Period, int]], hooks: Sequence[HookLike], now: float
) -> list[str]:
    """Queue `budget.exceeded` for each period over its limit; only the ids new here.

    The ids name the period, so of several daemons checking at once one insert wins.
    """
    ids: list[str] = []
    for period in facts.over_limit(await spend(conn), limits):
        ids += await outbox.enqueue(conn, period.source, BUDGET_EXCEEDED, None, now, hooks)
    return ids


async def payload_facts(conn: Conn, job_id: str) -> PayloadFacts:
    """Reason, price, tokens, transitions, events and a sample of the train loss of a job."""
    found = await one(
        conn, "SELECT reason, total_price, token_count FROM jobs WHERE job_id = %s", (job_id,)
    )
    why, price, tokens = found if found is not None else (None, None, None)
    texts = await readers.metrics_json(conn, job_id, MetricFilter(resolution=facts.LOSS_POINTS))
    return PayloadFacts(
        reason=why,
        total_price=price,
        token_count=tokens,
        transitions=tuple(await readers.transitions(conn, job_id)),
        events=tuple(await readers.events(conn, job_id)),
        losses=facts.train_losses(texts),
    )
