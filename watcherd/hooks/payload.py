"""The event a hook receives: one JSON object, and the fields its templates may use.

Besides the delivery and the job object, the payload says why the job ended
(`reason`), what it cost (`price` in dollars, `token_count`), how long each phase
took (`durations`: queue, training, upload, total, in seconds), where its outputs
are (`model_output_name`, `model_object_id`, the adapter's name and id,
`wandb_url`, and `checkpoint_path`/`model_path` from the last event that named
one), and the train loss as a one-line sparkline (`loss_sparkline`).

The payload is strict JSON: NaN and ±Infinity (a diverged loss) become `null`
wherever they appear, in the metrics summary and in the job object alike, because
most receivers (JavaScript's `JSON.parse`, Go's `encoding/json`) refuse them. The
exact values stay in the database and in `watcherd metrics --json`.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from watcherd.config.schema import spec_too_wide
from watcherd.eventlog import last_field, price_facts
from watcherd.model import Alert, CancelRecord, Delivery, MetricsSummary, PayloadFacts, phases

#: The names a notification template may use; any other `{name}` is left as written.
TEMPLATE_FIELDS: Final = (
    "job_id",
    "status",
    "previous_status",
    "model",
    "model_output_name",
    "train_loss",
    "eval_loss",
    "best_train_loss",
    "best_eval_loss",
    "step",
    "delivery_id",
    "type",
    "reason",
    "price",
    "token_count",
    "queue_time",
    "training_time",
    "upload_time",
    "total_time",
    "model_object_id",
    "adapter_output_name",
    "adapter_object_id",
    "wandb_url",
    "checkpoint_path",
    "model_path",
    "loss_sparkline",
    "rule",
    "message",
    "value",
    "threshold",
    "eta",
    "eta_source",
)
_MISSING: Final = "-"
#: Job object fields copied to the payload's top level (null when the job lacks them).
OUTPUT_FIELDS: Final = (
    "model_output_name",
    "model_object_id",
    "adapter_output_name",
    "adapter_object_id",
)
SPARK_BLOCKS: Final = "▁▂▃▄▅▆▇█"
SPARK_NAN: Final = "×"
SPARK_WIDTH: Final = 30


def build_payload(
    delivery: Delivery,
    job: Mapping[str, Any] | None,
    summary: MetricsSummary,
    extras: Mapping[str, Any] | None = None,
    *,
    facts: PayloadFacts | None = None,
) -> dict[str, Any]:
    """The JSON object for one delivery; `job` is the last job object as received.

    `extras` (from the store) may hold the delivery's `alert` (an Alert), the job's
    `eta` ((epoch seconds, source)) and its `cancel` (a CancelRecord); `facts` (from
    the store) the job's reason, price, durations, events and losses (`job_facts`).
    """
    extras = extras or {}
    job_object = None if job is None else {k: v for k, v in job.items() if k != "events"}
    alerting = delivery.event.startswith("alert.")
    status = job.get("status") if alerting and job else delivery.event
    payload = {
        "type": delivery.event if alerting else f"job.{delivery.event}",
        "delivery_id": delivery.id,
        "occurred_at": _iso_utc(delivery.occurred_at),
        "job_id": delivery.job_id,
        "status": status,
        "previous_status": delivery.previous_status,
        "alert": _alert(extras.get("alert"), delivery),
        "eta": _eta(extras.get("eta"), delivery.occurred_at),
        "cancel": _cancel(extras.get("cancel")),
        "job": job_object,
        "metrics": {
            "last_step": summary.last_step,
            "last_train_loss": summary.last_train_loss,
            "best_train_loss": summary.best_train_loss,
            "last_eval_loss": summary.last_eval_loss,
            "best_eval_loss": summary.best_eval_loss,
        },
        "metrics_complete": summary.complete,
        **job_facts(delivery, job or {}, facts or PayloadFacts()),
    }
    result: dict[str, Any] = strict_json(payload)
    return result


def _alert(alert: Alert | None, delivery: Delivery) -> dict[str, Any] | None:
    """The alert part: its id, rule, episode, state and the values that tripped it."""
    if alert is None:
        return None
    details = {k: v for k, v in alert.details.items() if k != "resolution"}
    return {
        "id": alert.id,
        "rule": alert.rule,
        "episode": alert.episode,
        "state": "resolved" if delivery.event.endswith(".resolved") else "open",
        "action": alert.action,
        "opened_at": _iso_utc(alert.opened_at),
        "resolved_at": None if alert.resolved_at is None else _iso_utc(alert.resolved_at),
        **details,
    }


def _eta(eta: tuple[float, str] | None, now: float) -> dict[str, Any] | None:
    """`{at, seconds_remaining, source}` as of the event."""
    if eta is None:
        return None
    at, source = eta
    return {"at": _iso_utc(at), "seconds_remaining": max(0.0, at - now), "source": source}


def _cancel(record: CancelRecord | None) -> dict[str, Any] | None:
    """Who asked the service to cancel the job, why, and the outcome."""
    return None if record is None else record.summary(_iso_utc)


def build_budget_payload(delivery: Delivery, *, limit: float, spent: float) -> dict[str, Any]:
    """The JSON object of a `budget.exceeded` delivery (limit and spend in dollars).

    `job_id` names the period (`budget:daily:2026-05-19`); `reason` says it in words.
    """
    _, period, key = ([*delivery.job_id.split(":", 2), "", ""])[:3]
    words = f"{period} budget of ${limit:,.2f} exceeded: ${spent:,.2f} spent ({key})"
    payload = {
        "type": delivery.event,
        "delivery_id": delivery.id,
        "occurred_at": _iso_utc(delivery.occurred_at),
        "job_id": delivery.job_id,
        "status": delivery.event,
        "previous_status": None,
        "period": period,
        "period_key": key,
        "limit": limit,
        "price": spent,
        "reason": words,
    }
    result: dict[str, Any] = strict_json(payload)
    return result


def job_facts(delivery: Delivery, job: Mapping[str, Any], facts: PayloadFacts) -> dict[str, Any]:
    """The payload's fields beyond the delivery, the job object and the metrics summary."""
    events = facts.events
    own_price, own_tokens = price_facts(job)
    spent = facts.total_price if facts.total_price is not None else own_price
    tokens = facts.token_count if facts.token_count is not None else own_tokens
    took = phases(facts.transitions, delivery.event, delivery.occurred_at)
    return {
        "reason": facts.reason,
        "price": None if spent is None else spent / 1_000_000_000,
        "token_count": tokens,
        "durations": {
            "queue": took["queue_wait"],
            "training": took["training"],
            "upload": took["upload"],
            "total": took["total"],
        },
        **{name: _string(job.get(name)) for name in OUTPUT_FIELDS},
        "wandb_url": _string(job.get("wandb_url")) or last_field(events, "wandb_url"),
        "checkpoint_path": last_field(events, "checkpoint_path"),
        "model_path": last_field(events, "model_path") or _string(job.get("model_output_path")),
        "loss_sparkline": loss_sparkline(facts.losses),
    }


def loss_sparkline(losses: Sequence[float], width: int = SPARK_WIDTH) -> str | None:
    """`█▆▄▃▂▂▁▁ 2.43 → 1.98`: the loss in blocks (× where NaN), first and last value."""
    if not losses:
        return None
    shown = list(losses)
    if len(shown) > width:
        shown = [shown[round(i * (len(shown) - 1) / (width - 1))] for i in range(width)]
    finite = [v for v in shown if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    scale = (len(SPARK_BLOCKS) - 1) / (high - low) if high > low else 0.0
    blocks = "".join(
        SPARK_BLOCKS[round((v - low) * scale)] if math.isfinite(v) else SPARK_NAN for v in shown
    )
    return f"{blocks} {_text(losses[0])} → {_text(losses[-1])}"


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The payload as compact, strict JSON bytes (what is signed and sent)."""
    return json.dumps(strict_json(payload), allow_nan=False, separators=(",", ":")).encode()


def strict_json(value: Any) -> Any:
    """A copy of `value` with every NaN or ±Infinity float replaced by None.

    Iterative: a job object nested a thousand levels deep costs a loop, not the stack.
    """
    pending: list[tuple[Any, Any]] = []
    root = _copy_node(value, pending)
    while pending:
        source, target = pending.pop()
        if isinstance(source, Mapping):
            for key, item in source.items():
                target[str(key)] = _copy_node(item, pending)
        else:
            target.extend(_copy_node(item, pending) for item in source)
    return root


def _copy_node(value: Any, pending: list[tuple[Any, Any]]) -> Any:
    """A scalar made strict, or an empty container queued on `pending` to be filled."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        mapping: dict[str, Any] = {}
        pending.append((value, mapping))
        return mapping
    if isinstance(value, list | tuple):
        sequence: list[Any] = []
        pending.append((value, sequence))
        return sequence
    return value


def template_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """Preformatted strings for notification templates; anything unknown shows as `-`."""
    job = payload.get("job") or {}
    metrics = payload.get("metrics") or {}
    alert = payload.get("alert") or {}
    eta = payload.get("eta") or {}
    raw = {
        "job_id": payload.get("job_id"),
        "status": payload.get("status"),
        "previous_status": payload.get("previous_status"),
        "model": job.get("model"),
        "model_output_name": job.get("model_output_name") or job.get("output_name"),
        "train_loss": metrics.get("last_train_loss"),
        "eval_loss": metrics.get("last_eval_loss"),
        "best_train_loss": metrics.get("best_train_loss"),
        "best_eval_loss": metrics.get("best_eval_loss"),
        "step": metrics.get("last_step"),
        "delivery_id": payload.get("delivery_id"),
        "type": payload.get("type"),
        "rule": alert.get("rule"),
        "message": alert.get("message"),
        "value": alert.get("value"),
        "threshold": alert.get("threshold"),
        "eta": eta.get("at"),
        "eta_source": eta.get("source"),
        **_fact_fields(payload),
    }
    return {name: _text(value) for name, value in raw.items()}


def _fact_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Template fields from the payload's reason, price, durations and outputs."""
    durations = payload.get("durations") or {}
    price = payload.get("price")
    names = ("reason", "token_count", "wandb_url", "checkpoint_path", "model_path")
    return {
        **{name: payload.get(name) for name in (*names, "loss_sparkline")},
        "price": f"${price:,.2f}" if isinstance(price, int | float) else None,
        **{f"{k}_time": _duration(durations.get(k)) for k in ("queue", "training", "upload")},
        "total_time": _duration(durations.get("total")),
        **{name: payload.get(name) for name in OUTPUT_FIELDS[1:]},
    }


def _duration(seconds: Any) -> str | None:
    """`42s`, `3m 5s`, `2h 5m`, `1d 4h`; None when unknown."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return None
    if not math.isfinite(seconds):
        return None
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    pairs = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in pairs if n][:2]
    return " ".join(shown) or "0s"


def render(template: str, fields: Mapping[str, str]) -> str:
    """Fill `template` from `fields`; never raises.

    An unknown `{name}`, or one with attribute or index access, is left as written,
    so a typo shows in the message. Values are preformatted strings: a format spec
    they cannot take (`{train_loss:.2f}`) is ignored. A template that cannot be
    parsed at all (positional `{}`, a stray brace) is returned unchanged.
    """
    try:
        return _Formatter().vformat(template, (), dict(fields))
    except (ValueError, IndexError, KeyError, TypeError):
        return template


class _Formatter(string.Formatter):
    """Plain `{name}` lookups only; anything else stays literal."""

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        if field_name not in kwargs:
            return "{" + field_name + "}", field_name
        return kwargs[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if spec_too_wide(format_spec):  # the loader refuses these; a spec may come from a field
            return str(value)
        try:
            return format(value, format_spec)
        except ValueError:
            return str(value)


def _text(value: Any) -> str:
    if value is None or value == "":
        return _MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, ".4g") if math.isfinite(value) else _MISSING
    return str(value)


def _iso_utc(epoch_seconds: float) -> str:
    stamp = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
