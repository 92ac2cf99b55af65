"""The hook payload (strict JSON) and the notification template fields."""

from __future__ import annotations

import json
import math
from typing import Any

from watcherd.config.schema import TEMPLATE_FIELDS as CONFIG_TEMPLATE_FIELDS
from watcherd.hooks.payload import (
    TEMPLATE_FIELDS,
    build_payload,
    encode_payload,
    loss_sparkline,
    render,
    template_fields,
)
from watcherd.model import Delivery, DeliveryState, MetricsSummary, PayloadFacts, Transition

DELIVERY = Delivery(
    id="ft-abc:completed:deploy",
    job_id="ft-abc",
    hook="deploy",
    event="completed",
    previous_status="uploading",
    occurred_at=1_700_000_000.25,
    state=DeliveryState.PENDING,
    attempts=0,
    next_attempt_at=None,
    last_error=None,
    output_tail=None,
    updated_at=1_700_000_000.25,
)
SUMMARY = MetricsSummary(
    last_step=120,
    last_train_loss=math.nan,
    best_train_loss=0.5,
    last_eval_loss=math.inf,
    best_eval_loss=None,
)
JOB: dict[str, Any] = {
    "id": "ft-abc",
    "status": "completed",
    "model": "meta/llama",
    "model_output_name": "me/llama-ft",
    "events": [{"message": "a very long list"}],
    "learning_rate": -math.inf,
}


def test_payload_fields() -> None:
    """The payload has the documented top-level fields and drops the job's events."""
    payload = build_payload(DELIVERY, JOB, SUMMARY)
    assert payload["type"] == "job.completed"
    assert payload["delivery_id"] == "ft-abc:completed:deploy"
    assert payload["occurred_at"] == "2023-11-14T22:13:20.250Z"
    assert (payload["job_id"], payload["status"]) == ("ft-abc", "completed")
    assert payload["previous_status"] == "uploading"
    assert "events" not in payload["job"] and payload["job"]["model"] == "meta/llama"
    assert "events" in JOB


def test_non_finite_numbers_become_null() -> None:
    """NaN and ±Infinity, in metrics or in the job, are null so the body is strict JSON."""
    payload = build_payload(DELIVERY, JOB, SUMMARY)
    assert payload["metrics"] == {
        "last_step": 120,
        "last_train_loss": None,
        "best_train_loss": 0.5,
        "last_eval_loss": None,
        "best_eval_loss": None,
    }
    assert payload["job"]["learning_rate"] is None
    assert json.loads(encode_payload(payload)) == payload
    assert encode_payload({"loss": math.nan, "xs": [math.inf]}) == b'{"loss":null,"xs":[null]}'


def test_missing_job_and_custom_event() -> None:
    """A watcherd event such as `missing` works without any job object."""
    missing = Delivery(**{**_fields(DELIVERY), "event": "missing", "previous_status": None})
    payload = build_payload(missing, None, MetricsSummary(None, None, None, None, None))
    assert (payload["type"], payload["job"], payload["previous_status"]) == (
        "job.missing",
        None,
        None,
    )
    fields = template_fields(payload)
    assert (fields["model"], fields["previous_status"], fields["step"]) == ("-", "-", "-")


def test_template_fields_are_formatted() -> None:
    """Every template field is a string; losses are short and absent values show as `-`."""
    fields = template_fields(build_payload(DELIVERY, JOB, SUMMARY))
    assert fields == {
        "job_id": "ft-abc",
        "status": "completed",
        "previous_status": "uploading",
        "model": "meta/llama",
        "model_output_name": "me/llama-ft",
        "train_loss": "-",
        "eval_loss": "-",
        "best_train_loss": "0.5",
        "best_eval_loss": "-",
        "step": "120",
        "delivery_id": "ft-abc:completed:deploy",
        "type": "job.completed",
    } | dict.fromkeys(TEMPLATE_FIELDS[12:], "-")


def test_render_never_raises() -> None:
    """Unknown names, attribute access, bad specs and stray braces cannot crash a template."""
    fields = {"job_id": "ft-abc", "train_loss": "0.25"}
    assert render("{job_id} loss {train_loss}", fields) == "ft-abc loss 0.25"
    assert render("{nope} {job_id.__class__} {job_id[0]}", fields) == (
        "{nope} {job_id.__class__} {job_id[0]}"
    )
    assert render("{train_loss:.2f}|{job_id:>8}", fields) == "0.25|  ft-abc"
    assert render("{job_id", fields) == "{job_id"
    assert render("} {", fields) == "} {"


def _fields(delivery: Delivery) -> dict[str, Any]:
    """A Delivery's fields as a dict."""
    return delivery._asdict()


def _transitions() -> tuple[Transition, ...]:
    """pending 60 s, queued 10 min, running 1 h, uploading 5 min, then completed."""
    at = DELIVERY.occurred_at - 60 - 600 - 3600 - 300
    steps = [(None, "pending", 0), ("pending", "queued", 60), ("queued", "running", 600)]
    steps += [("running", "uploading", 3600), ("uploading", "completed", 300)]
    out = []
    for before, after, wait in steps:
        at += wait
        out.append(Transition("ft-abc", before, after, at))
    return tuple(out)


FACTS = PayloadFacts(
    reason="Fine-tuning job completed",
    total_price=1_500_000_000,
    token_count=850_000,
    transitions=_transitions(),
    events=(
        {"type": "wandb_init", "message": "w", "wandb_url": "https://wandb.ai/x"},
        {"type": "checkpoint_save", "message": "a", "checkpoint_path": "s3://b/ckpt-10"},
        {"type": "CHECKPOINT_SAVE", "message": "b", "checkpoint_path": "s3://b/ckpt-20"},
        {"type": "model_upload_complete", "message": "c", "model_path": "s3://b/final"},
    ),
    losses=(2.0, 1.5, math.nan, 1.0, 0.5),
)
RICH_JOB = JOB | {"model_object_id": "mo-1", "adapter_object_id": "ao-1", "total_price": 7}


def test_rich_payload_fields_are_present_and_strict_json() -> None:
    """Reason, price in dollars, tokens, durations, outputs, paths and the sparkline."""
    payload = build_payload(DELIVERY, RICH_JOB, SUMMARY, facts=FACTS)
    assert json.loads(encode_payload(payload)) == payload
    assert payload["reason"] == "Fine-tuning job completed"
    assert (payload["price"], payload["token_count"]) == (1.5, 850_000)
    assert payload["durations"] == {"queue": 660.0, "training": 3600.0, "upload": 300.0} | {
        "total": 4560.0
    }
    assert (payload["model_output_name"], payload["model_object_id"]) == ("me/llama-ft", "mo-1")
    assert (payload["adapter_object_id"], payload["adapter_output_name"]) == ("ao-1", None)
    assert payload["wandb_url"] == "https://wandb.ai/x"
    assert payload["checkpoint_path"] == "s3://b/ckpt-20"
    assert payload["model_path"] == "s3://b/final"
    assert payload["loss_sparkline"] == "█▆×▃▁ 2 → 0.5"


def test_rich_template_fields() -> None:
    """Templates get the reason, `$1.50`, durations as text and the sparkline."""
    fields = template_fields(build_payload(DELIVERY, RICH_JOB, SUMMARY, facts=FACTS))
    assert (fields["reason"], fields["price"], fields["token_count"]) == (
        "Fine-tuning job completed",
        "$1.50",
        "850000",
    )
    assert (fields["queue_time"], fields["training_time"]) == ("11m", "1h")
    assert (fields["upload_time"], fields["total_time"]) == ("5m", "1h 16m")
    assert fields["checkpoint_path"] == "s3://b/ckpt-20"
    assert render("{job_id}: {reason} ({price}) {loss_sparkline}", fields) == (
        "ft-abc: Fine-tuning job completed ($1.50) █▆×▃▁ 2 → 0.5"
    )
    assert set(fields) == set(TEMPLATE_FIELDS) == set(CONFIG_TEMPLATE_FIELDS)


def test_price_falls_back_to_the_job_object() -> None:
    """Without stored facts the price and tokens come from the job object."""
    payload = build_payload(DELIVERY, RICH_JOB | {"token_count": 3}, SUMMARY)
    assert (payload["price"], payload["token_count"]) == (7e-9, 3)
    assert payload["durations"] == dict.fromkeys(("queue", "training", "upload", "total"))


def test_sparkline_samples_long_series() -> None:
    """A long loss series is sampled down to 30 blocks; all-NaN shows crosses."""
    line = loss_sparkline([float(100 - i) for i in range(100)])
    assert line is not None and len(line.split(" ")[0]) == 30 and line.startswith("█")
    assert loss_sparkline([math.nan, math.nan]) == "×× - → -"
    assert loss_sparkline([]) is None
