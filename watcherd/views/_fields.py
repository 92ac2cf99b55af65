"""The job object's fields worth showing, as (label, text) pairs: only those present."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from watcherd.model import JobOverview
from watcherd.views._fmt import number, real


def job_fields(raw: dict[str, Any] | None, job: JobOverview) -> list[tuple[str, str]]:
    """(label, value) for each field the job object holds, falling back to the overview.

    Values are as the server sent them (for `show --json`); the text page makes them `safe`.
    """
    raw = raw if isinstance(raw, dict) else {}
    merged = {"model": job.model, "model_output_name": job.model_output_name, **_present(raw)}
    pairs = []
    for label, render in _FIELDS:
        text = render(merged)
        if text:
            pairs.append((label, text))
    return pairs


def _present(raw: dict[str, Any]) -> dict[str, Any]:
    """The job object without null fields."""
    return {k: v for k, v in raw.items() if v is not None}


def _key(name: str) -> Callable[[dict[str, Any]], str | None]:
    """A renderer that shows one field as it is (numbers formatted)."""

    def render(job: dict[str, Any]) -> str | None:
        value = job.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, float):
            return number(value)
        return str(value)

    return render


def _method(job: dict[str, Any]) -> str | None:
    """`sft` or `dpo (beta 0.1)` from training_method."""
    method = job.get("training_method")
    if not isinstance(method, dict) or not method.get("method"):
        return None
    extras = [f"beta {method['dpo_beta']}"] if method.get("dpo_beta") is not None else []
    if method.get("dpo_reference_free"):
        extras.append("reference free")
    return f"{method['method']} ({', '.join(extras)})" if extras else str(method["method"])


def _training_type(job: dict[str, Any]) -> str | None:
    """`LoRA (r 64, alpha 128, dropout 0, all-linear)` or `Full` from training_type."""
    kind = job.get("training_type")
    if not isinstance(kind, dict) or not kind.get("type"):
        return None
    if str(kind["type"]).lower() != "lora":
        return str(kind["type"])
    names = (("lora_r", "r"), ("lora_alpha", "alpha"), ("lora_dropout", "dropout"))
    parts = [f"{short} {kind[key]}" for key, short in names if kind.get(key) is not None]
    if kind.get("lora_trainable_modules"):
        parts.append(str(kind["lora_trainable_modules"]))
    return f"LoRA ({', '.join(parts)})" if parts else "LoRA"


def _epochs(job: dict[str, Any]) -> str | None:
    """`3 (1 completed)` from n_epochs and epochs_completed."""
    if job.get("n_epochs") is None:
        return None
    done = job.get("epochs_completed")
    return f"{job['n_epochs']} ({done} completed)" if done is not None else str(job["n_epochs"])


def _learning_rate(job: dict[str, Any]) -> str | None:
    """`1e-05, cosine` from learning_rate and lr_scheduler."""
    rate = job.get("learning_rate")
    if rate is None:
        return None
    scheduler = job.get("lr_scheduler")
    kind = scheduler.get("lr_scheduler_type") if isinstance(scheduler, dict) else None
    shown = number(rate) if isinstance(rate, int | float) else str(rate)
    return f"{shown}, {kind}" if kind else shown


def _price(job: dict[str, Any]) -> str | None:
    """`$1.50` from total_price in nano-dollars, as the together CLI prints it."""
    dollars = real(job.get("total_price"))
    return f"${dollars / 1_000_000_000:,.2f}" if dollars is not None else None


def _wandb(job: dict[str, Any]) -> str | None:
    """The W&B run URL, else its project name."""
    return _key("wandb_url")(job) or _key("wandb_project_name")(job)


def _evals(job: dict[str, Any]) -> str | None:
    """`5 (every 20 steps)` from n_evals and eval_steps."""
    if not job.get("n_evals"):
        return None
    every = job.get("eval_steps")
    return f"{job['n_evals']} (every {every} steps)" if every else str(job["n_evals"])


def _early_stop(job: dict[str, Any]) -> str | None:
    """`yes, best step 120` when the job stopped early."""
    if not job.get("early_stopped"):
        return None
    best = job.get("early_stopping_best_step")
    return f"yes, best step {best}" if best is not None else "yes"


_FIELDS: Final[tuple[tuple[str, Callable[[dict[str, Any]], str | None]], ...]] = (
    ("model", _key("model")),
    ("output name", _key("model_output_name")),
    ("suffix", _key("suffix")),
    ("method", _method),
    ("training type", _training_type),
    ("epochs", _epochs),
    ("checkpoints", _key("n_checkpoints")),
    ("evals", _evals),
    ("batch size", _key("batch_size")),
    ("learning rate", _learning_rate),
    ("warmup ratio", _key("warmup_ratio")),
    ("training file", _key("training_file")),
    ("validation file", _key("validation_file")),
    ("tokens", _key("token_count")),
    ("price", _price),
    ("wandb", _wandb),
    ("early stopped", _early_stop),
    ("created", _key("created_at")),
    ("queue depth", _key("queue_depth")),
)
