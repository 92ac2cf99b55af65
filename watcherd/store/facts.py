"""What both backends derive alike from a job's event log, price and history.

The SQLite store (`watcherd.store.writer`, `readers`) and the PostgreSQL one
(`watcherd.store.postgres.eventlog`) differ in their SQL only; which events are new,
when a job's reason is worked out, which jobs a restart names, how a stored row
becomes spend and which budget periods are over their limit are decided here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from watcherd.eventlog import event_keys, price_facts, restart_target
from watcherd.model import is_settled, is_terminal, job_epoch, loads_exact, row_kind
from watcherd.spend import Period, SpendRow, spent

Event = Mapping[str, Any]

#: How many train losses a payload's sparkline is drawn from.
LOSS_POINTS: Final = 40

#: Every priced job (same text on both backends: no placeholders). A row from before
#: the price columns existed (`job_created_at` NULL) brings its job object to read them
#: from; new rows never do.
SPEND_SQL: Final = (
    "SELECT job_id, model, status, total_price, job_created_at, added_at,"
    " CASE WHEN total_price IS NULL OR job_created_at IS NULL THEN job_json END FROM jobs"
    " WHERE total_price IS NOT NULL OR (job_created_at IS NULL AND job_json IS NOT NULL)"
    " ORDER BY added_at, job_id"
)


def fresh_events(events: Sequence[Event], stored: Iterable[str]) -> list[tuple[str, Event]]:
    """(key, event) of the events whose key is not stored yet, in API order."""
    known = set(stored)
    return [(k, e) for k, e in zip(event_keys(events), events, strict=True) if k not in known]


def wants_reason(
    status: str | None, new: Sequence[Event], transition: object, job: Mapping[str, Any] | None
) -> bool:
    """True when a poll may change a job's reason: it is terminal and something came."""
    return is_terminal(status or "") and bool(new or transition is not None or job is not None)


def restart_targets(new: Iterable[Event], job_id: str) -> tuple[str, ...]:
    """The jobs that new `job_restarted` events say continue `job_id`, each once, in order."""
    found = (restart_target(event, job_id) for event in new)
    return tuple(dict.fromkeys(t for t in found if t is not None))


def price_fields(
    rec_price: int | None, tokens: int | None, job: Mapping[str, Any] | None, observed_at: float
) -> dict[str, Any]:
    """The job columns of a poll's price, tokens and creation time (those it knows)."""
    own_price, own_tokens = price_facts(job) if job is not None else (None, None)
    price = rec_price if rec_price is not None else own_price
    tokens = tokens if tokens is not None else own_tokens
    fields: dict[str, Any] = {}
    if price is not None:
        fields.update(total_price=price, price_seen_at=observed_at)
    if tokens is not None:
        fields["token_count"] = tokens
    created = job_epoch(job, "created_at")
    if created is not None:
        fields["job_created_at"] = created
    return fields


def spend_rows(rows: Iterable[Sequence[Any]]) -> list[SpendRow]:
    """SpendRows from `SPEND_SQL`'s rows (unpriced ones left out)."""
    found = []
    for job_id, model, status, price, created, added, job_json in rows:
        if job_json is not None:
            job = _object(job_json)
            price = price if price is not None else price_facts(job)[0]
            created = created if created is not None else job_epoch(job, "created_at")
        if price is None:
            continue
        at = float(created) if created is not None else float(added)
        found.append(SpendRow(str(job_id), model, at, int(price), not is_settled(status)))
    return found


def _object(text: str) -> dict[str, Any]:
    try:
        found = loads_exact(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def over_limit(rows: Sequence[SpendRow], limits: Iterable[tuple[Period, int]]) -> list[Period]:
    """The periods whose spend (nano-dollars) is over their limit."""
    return [p for p, limit in limits if spent(rows, p.start, p.end) > limit]


def train_losses(texts: Iterable[str]) -> tuple[float, ...]:
    """The train losses of stored metric rows (JSON texts), in order, NaN kept (a `null`
    one, stored as received, is no value)."""
    rows = (loads_exact(text) for text in texts)
    return tuple(
        float(r["train/loss"])
        for r in rows
        if row_kind(r) == "train" and r.get("train/loss") is not None
    )
