"""Turn a POST /v1/fine-tunes body into a JobSpec with sane defaults.

Besides the SDK's fields, a body may carry `"sim": {...}`: JobSpec overrides (the
scenario keys), so a test can create a job with a chosen life.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcherd.sim.scenario import JobSpec, job_spec

_STEPS_PER_EPOCH = 50


def _get(body: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key}: must be an integer")
    if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{key}: must be a number")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{key}: must be a string")
    return value


def _section(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: must be an object")
    return value


def spec_from_request(body: Mapping[str, Any]) -> JobSpec:
    """The JobSpec for a create request; ValueError names the bad field."""
    training_file = _get(body, "training_file", str, None)
    if not training_file:
        raise ValueError("training_file: required")
    model = _get(body, "model", str, None) or _get(body, "from_checkpoint", str, None)
    if not model:
        raise ValueError("model: required")
    n_epochs = _get(body, "n_epochs", int, 1)
    if n_epochs < 1:
        raise ValueError("n_epochs: must be at least 1")
    steps = n_epochs * _STEPS_PER_EPOCH
    n_evals = _get(body, "n_evals", int, 0)
    batch = body.get("batch_size")
    raw: dict[str, Any] = {
        "model": model,
        "training_file": training_file,
        "validation_file": _get(body, "validation_file", str, None) or None,
        "n_epochs": n_epochs,
        "steps": steps,
        "eval_steps": max(1, steps // n_evals) if n_evals > 0 else 0,
        "n_checkpoints": _get(body, "n_checkpoints", int, 1),
        "batch_size": batch if isinstance(batch, int) and not isinstance(batch, bool) else 8,
        "learning_rate": _get(body, "learning_rate", float, 1e-5),
        "suffix": _get(body, "suffix", str, None),
        "method": _section(body, "training_method").get("method", "sft"),
        "lora": _section(body, "training_type").get("type", "Lora") != "Full",
        "lr_scheduler": _section(body, "lr_scheduler").get("lr_scheduler_type", "cosine"),
    }
    raw.update(_section(body, "sim"))
    spec: JobSpec = job_spec(raw, "request")
    return spec
