"""A job's event log (`GET /v1/fine-tunes/{id}/events`), consistent with its history.

Every status the job enters logs the events Together logs then (`job_pending`,
`job_start`, downloads, `training_start`, ..., `job_complete`); training logs
`epoch_complete` and `checkpoint_save` at the steps it reaches, and a `warning` at
the step its loss turns NaN. Failures log why: `job_error` (a worker failure, or
the user's bad training file), `billing_limit` followed by a `refund`.

Casing: the SDK's generated models spell `type` in lower case and `level` as
`info`/`warning`/`error`; its hand-written enums spell `JOB_PENDING`, ...
(`COMPRESSING_MODEL`, `JOB_USER_ERROR`) and `Info`/`Warning`/`Error`. Which one the
service sends is unknown, so half of the jobs (by seed) use each.

Restarts (an assumption: Together documents the `job_restarted` type only): when
the service restarts a failed job as a new one, the old job ends `error` and logs
`job_error` then `job_restarted` with the message "Job restarted as ft-NEW from
the checkpoint at step N" (the new ID appears in the message and in no field); the
new job's object names the old one in `from_checkpoint` (`ft-OLD:N`).
"""

from __future__ import annotations

from typing import Any, Final

from watcherd.model import format_ns
from watcherd.sim.job import SimJob

Spec = tuple[str, str, str]  # (type, message, level)
Timed = tuple[float, dict[str, Any]]

#: Types the hand-written enum spells differently from the upper-cased lower-case name.
_UPPER: Final = {"model_compressing": "COMPRESSING_MODEL", "job_user_error": "JOB_USER_ERROR"}
_USER_ERRORS: Final = (
    "Invalid training file: line 12 is missing the required field 'messages'",
    "Training file has 3 examples; at least 8 are required",
    "Validation file is not valid JSONL: line 4 is not a JSON object",
)
_WORKER_ERRORS: Final = (
    "Training failed: the worker ran out of GPU memory at step {step}",
    "Training failed: the worker exited with code 137 at step {step}",
)


def upper_case(job: SimJob) -> bool:
    """True if this job's events use the hand-written enums' spellings."""
    return job.seed % 2 == 1


def events(job: SimJob, now: float) -> list[dict[str, Any]]:
    """Every event the job has logged by `now`, oldest first, in its casing."""
    timed = [*_step_events(job), *_status_events(job)]
    timed.sort(key=lambda pair: pair[0])
    shown = [{"created_at": iso(at), **event} for at, event in timed if at <= now]
    return [_cased(e) for e in shown] if upper_case(job) else shown


def iso(seconds: float) -> str:
    """ISO-8601 UTC text for sim epoch seconds (microseconds)."""
    return format_ns(round(seconds * 1e6) * 1000)


def event(kind: str, message: str, level: str, **extra: Any) -> dict[str, Any]:
    """One event object as the service sends it (lower-case spelling)."""
    return {"object": "fine-tune-event", "type": kind, "message": message, "level": level} | extra


def _cased(found: dict[str, Any]) -> dict[str, Any]:
    kind = str(found["type"])
    level = found.get("level")
    return found | {
        "type": _UPPER.get(kind, kind.upper()),
        "level": level.capitalize() if isinstance(level, str) else level,
    }


def _status_events(job: SimJob) -> list[Timed]:
    """The events each status logs when the job enters it."""
    out: list[Timed] = []
    for at, status in job.timeline.transitions():
        out += [(at, e) for e in _on_enter(job, status)]
    return out


def _on_enter(job: SimJob, status: str) -> list[dict[str, Any]]:
    spec = job.spec
    if status == "pending":
        return [event("job_pending", "Fine tune request created", "info")]
    if status == "running":
        return _start(job)
    if status == "compressing":
        return [
            event("training_complete", "Training completed", "info"),
            event("model_compressing", "Compressing the model weights", "info"),
        ]
    if status == "uploading":
        done = [event("model_compression_complete", "Model compressed", "info")]
        upload = event("model_uploading", f"Uploading the model to {_path(job)}", "info")
        return [*(done if spec.compress > 0 else []), upload]
    return _on_end(job, status)


def _start(job: SimJob) -> list[dict[str, Any]]:
    """The events of a job that starts training."""
    found = [
        event("job_start", "Job started", "info"),
        event("model_downloading", f"Downloading the base model {job.spec.model}", "info"),
        event("model_download_complete", "Base model downloaded", "info"),
        event("training_data_downloading", "Downloading the training data", "info"),
        event("training_data_download_complete", "Training data downloaded", "info"),
    ]
    if job.spec.wandb:
        extra = {"wandb_url": wandb_url(job)}
        found.append(event("wandb_init", "Weights & Biases run initialized", "info", **extra))
    if job.spec.validation_file:
        found += [
            event("validation_data_downloading", "Downloading the validation data", "info"),
            event("validation_data_download_complete", "Validation data downloaded", "info"),
        ]
    steps = job.spec.steps
    return [*found, event("training_start", f"Training started ({steps} steps)", "info")]


def _on_end(job: SimJob, status: str) -> list[dict[str, Any]]:
    """The events of a terminal (or cancelling) status: why the job ended."""
    if status == "completed":
        done = event("model_upload_complete", "Model uploaded", "info", model_path=_path(job))
        return [done, event("job_complete", "Fine-tuning job completed", "info")]
    if status == "user_error":
        message = _USER_ERRORS[job.seed % len(_USER_ERRORS)]
        return [event("job_user_error" if upper_case(job) else "job_error", message, "error")]
    if status == "cancel_requested":
        return [event("cancel_requested", "Cancel requested by the user", "info")]
    if status == "cancelled":
        return [event("job_stopped", "Job cancelled by the user", "info")]
    if status == "error":
        return _failure(job)
    return []


def _failure(job: SimJob) -> list[dict[str, Any]]:
    """`job_error` (and `job_restarted`), or `billing_limit` and `refund`."""
    step = job.timeline.last_step
    if job.spec.billing_limit:
        dollars = job.price_at(job.timeline.phases[-1][0]) / 1e9
        message = f"Billing limit reached: the job was stopped at step {step} (${dollars:.2f})"
        refund = f"Refunded ${job.step_price / 1e9:.4f} for the interrupted step"
        return [event("billing_limit", message, "error"), event("refund", refund, "info")]
    template = _WORKER_ERRORS[job.seed % len(_WORKER_ERRORS)]
    found = [event("job_error", template.format(step=step), "error")]
    if job.restarted_as is not None:
        message = f"Job restarted as {job.restarted_as} from the checkpoint at step {step}"
        found.append(event("job_restarted", message, "info", step=step))
    return found


def _step_events(job: SimJob) -> list[Timed]:
    """Epoch, checkpoint and NaN-loss warning events at the steps the job reaches."""
    spec = job.spec
    out: list[tuple[int, dict[str, Any]]] = []
    for k in range(1, spec.n_epochs + 1):
        step = round(k * spec.steps / spec.n_epochs)
        extra = {"step": step, "total_steps": spec.steps}
        out.append((step, event("epoch_complete", f"Epoch {k} completed", "info", **extra)))
    for step in intermediate_steps(job):
        path = f"s3://together-sim/{job.id}/checkpoint-{step}"
        saved = event("checkpoint_save", f"Checkpoint saved at step {step}", "info", step=step)
        out.append((step, saved | {"checkpoint_path": path}))
    if spec.diverge_at is not None:
        message = f"Training loss is NaN at step {spec.diverge_at}"
        out.append((spec.diverge_at, event("warning", message, "warning", step=spec.diverge_at)))
    last, cutoff = job.timeline.last_step, job.timeline.cutoff
    timed = [(job.step_time(s), e) for s, e in out if s <= last]
    return [(t, e) for t, e in timed if t is not None and (cutoff is None or t <= cutoff)]


def intermediate_steps(job: SimJob) -> list[int]:
    """Steps at which intermediate checkpoints are saved."""
    n, steps = job.spec.n_checkpoints, job.spec.steps
    return [round(k * steps / n) for k in range(1, n)] if n > 1 else []


def wandb_url(job: SimJob) -> str:
    """The W&B run of a job that logs to W&B."""
    return f"https://wandb.ai/sim-user/together-sim/runs/{job.id[3:11]}"


def _path(job: SimJob) -> str:
    return f"s3://together-sim/{job.id}/final"
