"""The hook payload (strict JSON) and the notification template fields."""

from __future__ import annotations

import json
import math
from typing import Any

from watcherd.hooks.payload import build_payload, encode_payload, render, template_fields
from watcherd.model import Delivery, DeliveryState, MetricsSummary

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
        **dict.fromkeys(("rule", "message", "value", "threshold", "eta", "eta_source"), "-"),
    }


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
    """A Delivery's fields as a dict (slotted dataclasses have no __dict__)."""
    return {name: getattr(delivery, name) for name in Delivery.__dataclass_fields__}
