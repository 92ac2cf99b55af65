"""The JSON objects the service returns for a job: job, list entry, events, checkpoints."""

from __future__ import annotations

import math
from typing import Any, Final

from watcherd.sim.events import events, intermediate_steps, iso, wandb_url
from watcherd.sim.job import SimJob

_HIDDEN_IN_LIST: Final = frozenset({"events", "job_id", "eval_steps", "total_steps"})


def _progress(job: SimJob, now: float) -> dict[str, Any]:
    nxt = job.timeline.next_change(now)
    if nxt is None or not job.spec.estimate:
        return {"estimate_available": False, "seconds_remaining": 0}
    return {"estimate_available": True, "seconds_remaining": math.ceil(nxt - now)}


def _queue_depth(job: SimJob, now: float) -> int:
    nxt = job.timeline.next_change(now)
    if nxt is None:
        return 3
    return max(0, math.ceil(5 * (nxt - now) / max(job.spec.queue, 1.0)))


def _method(job: SimJob) -> dict[str, Any]:
    if job.spec.method == "dpo":
        return {"method": "dpo", "dpo_beta": 0.1, "dpo_normalize_logratios_by_length": False}
    return {"method": "sft", "train_on_inputs": "auto"}


def _training_type(job: SimJob) -> dict[str, Any]:
    if not job.spec.lora:
        return {"type": "Full"}
    return {
        "type": "Lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_trainable_modules": "all-linear",
    }


def output_name(job: SimJob) -> str:
    """model_output_name: user/basemodel-suffix-idprefix."""
    base = job.spec.model.rsplit("/", 1)[-1]
    suffix = f"-{job.spec.suffix}" if job.spec.suffix else ""
    return f"{job.user_id}/{base}{suffix}-{job.id[3:11]}"


def _config(job: SimJob) -> dict[str, Any]:
    """The fields fixed at creation."""
    spec = job.spec
    scheduler_args: dict[str, Any] = {"min_lr_ratio": 0.0}
    if spec.lr_scheduler == "cosine":
        scheduler_args["num_cycles"] = 0.5
    return {
        "model": spec.model,
        "model_output_name": output_name(job),
        "adapter_output_name": f"{output_name(job)}-adapter" if spec.lora else None,
        "suffix": spec.suffix,
        "training_file": spec.training_file,
        "validation_file": spec.validation_file,
        "n_epochs": spec.n_epochs,
        "n_evals": spec.steps // spec.eval_steps if spec.eval_steps else 0,
        "n_checkpoints": spec.n_checkpoints,
        "eval_steps": spec.eval_steps,
        "total_steps": spec.steps,
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "lr_scheduler": {
            "lr_scheduler_type": spec.lr_scheduler,
            "lr_scheduler_args": scheduler_args,
        },
        "warmup_ratio": 0.05,
        "max_grad_norm": 1.0,
        "weight_decay": 0.0,
        "training_method": _method(job),
        "training_type": _training_type(job),
        "token_count": spec.steps * spec.batch_size * 2048,
        "param_count": 8_030_261_248,
        "wandb_url": wandb_url(job) if spec.wandb else None,
        "from_checkpoint": job.from_checkpoint,
    }


def job_object(job: SimJob, now: float, *, truncated: bool = False) -> dict[str, Any]:
    """The job as GET /v1/fine-tunes/{id} (or, truncated, as a list entry) shows it at `now`."""
    tl = job.timeline
    status = tl.status_at(now) or "pending"
    step = job.last_visible_step(math.floor(now * 1e9))
    started = tl.run_start is not None and tl.run_start <= now
    obj: dict[str, Any] = {
        "id": job.id,
        "object": "fine-tune",
        "status": status,
        "user_id": job.user_id,
        "created_at": iso(tl.created),
        "updated_at": iso(tl.changed_at(now)),
        "started_at": iso(tl.run_start) if started and tl.run_start is not None else None,
        **_config(job),
        "total_price": job.price_at(now),
        "progress": _progress(job, now),
        "steps_completed": step,
        "epochs_completed": int(step * job.spec.n_epochs // job.spec.steps),
        "evals_completed": step // job.spec.eval_steps if job.spec.eval_steps else 0,
        "job_id": job.id,
    }
    if status == "queued":
        obj["queue_depth"] = _queue_depth(job, now)
    if truncated:
        return {k: v for k, v in obj.items() if k not in _HIDDEN_IN_LIST}
    obj["events"] = events(job, now)
    return obj


def checkpoints(job: SimJob, now: float) -> list[dict[str, Any]]:
    """Checkpoints saved by `now`, newest first."""
    kind = "adapter" if job.spec.lora else "model"
    cutoff, last = job.timeline.cutoff, job.timeline.last_step
    timed = [(job.step_time(step), step) for step in intermediate_steps(job) if step <= last]
    found = [
        (at, _checkpoint(job, "Intermediate", step, at, kind))
        for at, step in timed
        if at is not None and at <= now and (cutoff is None or at <= cutoff)
    ]
    final = job.timeline.final
    if final is not None and final[1] == "completed" and final[0] <= now:
        found.append((final[0], _checkpoint(job, "Final", job.spec.steps, final[0], kind)))
    return [c for _, c in sorted(found, key=lambda pair: pair[0], reverse=True)]


def _checkpoint(job: SimJob, label: str, step: int, at: float, kind: str) -> dict[str, Any]:
    path = f"s3://together-sim/{job.id}/{label.lower()}-{step}"
    return {"checkpoint_type": label, "created_at": iso(at), "path": path, "step": step} | {
        "checkpoint": kind
    }
