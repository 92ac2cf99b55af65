"""Synthetic histories and jobs shared by the view tests (no tests in this module)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from watcherd.model import Delivery, JobOverview, MetricRow, Transition

GOLDEN = Path(__file__).parent / "golden"
NOW = 1_779_200_000.0
T0 = 1_779_196_193_564_587_000


def history(steps: int = 40, *, nan_at: int | None = 17) -> list[MetricRow]:
    """An SFT history: train rows every step, eval rows every 10, grad_norm spanning 1000×."""
    rows: list[MetricRow] = []
    for step in range(1, steps + 1):
        loss = 2.4 * math.exp(-step / 15) + 0.3
        rows.append(
            {
                "timestamp": T0 + step * 60_000_000_000,
                "train/global_step": step,
                "train/epoch": step / steps,
                "train/loss": math.nan if step == nan_at else round(loss, 6),
                "train/grad_norm": round(0.05 * 1.2**step, 6),
                "train/learning_rate": 1e-5 * (1 - step / (steps + 1)),
            }
        )
        if step % 10 == 0:
            rows.append(
                {
                    "timestamp": T0 + step * 60_000_000_000 + 1_000_000_000,
                    "train/global_step": step,
                    "train/epoch": step / steps,
                    "eval/loss": round(loss + 0.1, 6),
                }
            )
    return rows


def overview(job_id: str = "ft-0001", **changes: Any) -> JobOverview:
    """A running job seen a minute ago, with overrides."""
    fields: dict[str, Any] = {
        "job_id": job_id,
        "note": "sft lora",
        "watched": True,
        "status": "running",
        "status_since": NOW - 600,
        "step": 40,
        "train_loss": 0.4321,
        "eval_loss": 0.5012,
        "seconds_remaining": 1380.0,
        "last_poll_at": NOW - 60,
        "last_error": None,
        "model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        "model_output_name": "myorg/llama-my-suffix",
        "hooks": {"delivered": 2},
    }
    fields.update(changes)
    return JobOverview(**fields)


def transitions(job_id: str = "ft-0001") -> list[Transition]:
    """pending → queued → running → uploading → completed, minutes apart."""
    base = NOW - 3600
    chain = ["pending", "queued", "running", "uploading", "completed"]
    offsets = [0, 120, 600, 3000, 3300]
    froms: list[str | None] = [None, *chain[:-1]]
    return [
        Transition(job_id, before, after, base + offset)
        for before, after, offset in zip(froms, chain, offsets, strict=True)
    ]


def delivery(job_id: str = "ft-0001", **changes: Any) -> Delivery:
    """A dead command-hook delivery with a two-line error."""
    fields: dict[str, Any] = {
        "id": f"{job_id}:completed:deploy",
        "job_id": job_id,
        "hook": "deploy",
        "event": "completed",
        "previous_status": "uploading",
        "occurred_at": NOW - 300,
        "state": "dead",
        "attempts": 5,
        "next_attempt_at": None,
        "last_error": "exit status 1\nboom",
        "output_tail": "boom",
        "updated_at": NOW - 30,
    }
    fields.update(changes)
    return Delivery(**fields)


RAW_JOB: dict[str, Any] = {
    "id": "ft-0001",
    "status": "running",
    "model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "model_output_name": "myorg/llama-my-suffix",
    "training_method": {"method": "sft", "train_on_inputs": "auto"},
    "training_type": {"type": "Lora", "lora_r": 64, "lora_alpha": 128, "lora_dropout": 0.0},
    "n_epochs": 3,
    "epochs_completed": 1,
    "batch_size": 16,
    "learning_rate": 1e-05,
    "lr_scheduler": {"lr_scheduler_type": "cosine"},
    "total_price": 1_500_000_000,
    "wandb_url": None,
}


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; WATCHERD_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if os.environ.get("WATCHERD_UPDATE_GOLDEN") == "1":
        path.write_text(text + "\n", encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text + "\n", f"golden {name} differs"
