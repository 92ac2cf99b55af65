"""Scenarios: what jobs the simulated service holds and how each one's life goes.

A scenario is a mapping (or a YAML file holding one)::

    seed: 1            # optional; everything random derives from it
    speed: 60          # optional; sim seconds per wall-clock second
    jobs:
      - model: meta-llama/Meta-Llama-3.1-8B-Instruct-Reference
        method: sft            # sft | dpo
        lora: true             # false = full fine-tuning
        steps: 120             # total optimizer steps
        seconds_per_step: 5    # sim seconds per step
        eval_steps: 20         # an eval row every N steps; 0 = none
        n_epochs: 2
        n_checkpoints: 2
        created: -600          # sim seconds from world start (negative = in the past)
        pending: 5             # seconds in `pending`
        queue: 30              # seconds in `queued`
        compress: 20           # seconds in `compressing` (0 skips it)
        upload: 20             # seconds in `uploading`
        final: completed       # completed | error | user_error | cancelled
        error_at_step: 50      # final: error -> the last step it logs
        billing_limit: true    # final: error -> stopped by the account's spending limit
        restart_at_step: 60    # fails at this step; the service restarts it as a new job
        cancel_at: 300         # final: cancelled -> seconds after `created`
        cancel_delay: 5        # cancel_requested -> cancelled
        stay: queued           # never leaves `queued` (overrides final)
        diverge_at: 80         # train/eval loss is NaN from this step on (a sudden NaN)
        drift_at: 60           # loss grows by `drift` (3 %) a step from here on (slow divergence)
        drift: 0.03
        plateau_at: 40         # the curve stops improving here (noise goes on): a plateau
        stall_at: 50           # status stays running, no new row after this step ...
        stall_for: 30m         # ... for this long, then training resumes
        estimate: true         # false: progress.estimate_available is false
        suffix: demo
        wandb: true            # logs to Weights & Biases (wandb_url, a wandb_init event)
        batch_size: 8
        learning_rate: 1.0e-5
        lr_scheduler: cosine   # cosine | linear
        count: 1               # this many copies of the job

Durations are seconds, or text such as `90s`, `10m`, `2h`. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

FINALS: Final = ("completed", "error", "user_error", "cancelled")
DEFAULT_MODEL: Final = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smh]?)")
_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the job and key."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job's configuration and planned life, in sim seconds."""

    model: str = DEFAULT_MODEL
    method: str = "sft"
    lora: bool = True
    steps: int = 100
    seconds_per_step: float = 10.0
    eval_steps: int = 20
    n_epochs: int = 1
    n_checkpoints: int = 1
    created: float = 0.0
    pending: float = 5.0
    queue: float = 30.0
    compress: float = 20.0
    upload: float = 20.0
    final: str = "completed"
    error_at_step: int | None = None
    billing_limit: bool = False
    restart_at_step: int | None = None
    cancel_at: float | None = None
    cancel_delay: float = 5.0
    stay: str | None = None
    diverge_at: int | None = None
    drift_at: int | None = None
    drift: float = 0.03
    plateau_at: int | None = None
    stall_at: int | None = None
    stall_for: float = 0.0
    estimate: bool = True
    suffix: str | None = None
    wandb: bool = False
    batch_size: int = 8
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"
    training_file: str = "file-sim-train"
    validation_file: str | None = "file-sim-eval"
    count: int = 1

    def __post_init__(self) -> None:
        checks = {
            "method": self.method in ("sft", "dpo"),
            "final": self.final in FINALS,
            "stay": self.stay in (None, "queued"),
            "steps": self.steps >= 1,
            "seconds_per_step": self.seconds_per_step > 0,
            "eval_steps": self.eval_steps >= 0,
            "n_epochs": 1 <= self.n_epochs <= self.steps,
            "lr_scheduler": self.lr_scheduler in ("cosine", "linear"),
            "count": self.count >= 1,
            "cancel_at": self.final != "cancelled" or self.cancel_at is not None,
            "billing_limit": not self.billing_limit or self.final == "error",
            "restart_at_step": self.restart_at_step is None
            or (self.final == "completed" and 1 <= self.restart_at_step < self.steps),
            "stall_for": self.stall_for >= 0,
            "drift": self.drift >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ScenarioError(f"{key}: invalid value {getattr(self, key)!r}")

    @property
    def fails(self) -> bool:
        """True if training ends in `error` (a restart ends its first job so too)."""
        return self.final == "error" or self.restart_at_step is not None

    @property
    def last_step(self) -> int:
        """The last step the job logs if nothing cancels it."""
        if self.restart_at_step is not None:
            return self.restart_at_step
        if self.final == "error":
            return min(self.steps, self.error_at_step or max(1, self.steps // 2))
        return self.steps


@dataclass(frozen=True, slots=True)
class Scenario:
    """A seed, a default speed and the jobs (copies already expanded)."""

    jobs: tuple[JobSpec, ...]
    seed: int = 1
    speed: float = 60.0


_DURATION_KEYS: Final = frozenset(
    {"seconds_per_step", "created", "pending", "queue", "compress", "upload", "cancel_at"}
    | {"cancel_delay", "stall_for"}
)
_FIELDS: Final = {f.name: f for f in dataclasses.fields(JobSpec)}


def parse_duration(value: object) -> float:
    """Seconds from a number or text like `90`, `90s`, `10m`, `2h` (a leading `-` allowed)."""
    if isinstance(value, bool):
        raise ScenarioError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    match = _DURATION.fullmatch(text.lstrip("-").strip())
    if not match:
        raise ScenarioError(f"not a duration: {value!r}")
    return sign * float(match[1]) * _UNITS[match[2]]


def job_spec(raw: Mapping[str, Any], where: str = "job") -> JobSpec:
    """Build a JobSpec from a mapping, rejecting unknown keys."""
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            raise ScenarioError(f"{where}: unknown key {key!r}")
        kwargs[key] = _coerce(key, value, where)
    try:
        return JobSpec(**kwargs)
    except (TypeError, ScenarioError) as exc:
        raise ScenarioError(f"{where}: {exc}") from exc


def _coerce(key: str, value: Any, where: str) -> Any:
    """Convert one scenario value to the JobSpec field's type."""
    if value is None:
        return None
    try:
        if key in _DURATION_KEYS:
            return parse_duration(value)
        kind = str(_FIELDS[key].type)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if kind == "bool":
            return bool(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: {key}: {exc}") from exc


def load_scenario(source: str | Path | Mapping[str, Any]) -> Scenario:
    """A Scenario from a YAML file path or an already parsed mapping."""
    if isinstance(source, Mapping):
        raw: Any = source
    else:
        raw = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    if not isinstance(raw, Mapping):
        raise ScenarioError("a scenario must be a mapping with a `jobs` list")
    unknown = set(raw) - {"seed", "speed", "jobs"}
    if unknown:
        raise ScenarioError(f"unknown scenario keys: {sorted(unknown)}")
    jobs_raw = raw.get("jobs") or []
    if not isinstance(jobs_raw, list):
        raise ScenarioError("jobs: must be a list")
    specs: list[JobSpec] = []
    for i, item in enumerate(jobs_raw):
        if not isinstance(item, Mapping):
            raise ScenarioError(f"jobs[{i}]: must be a mapping")
        spec = job_spec(item, f"jobs[{i}]")
        specs.extend([spec] * spec.count)
    return Scenario(
        jobs=tuple(specs), seed=int(raw.get("seed", 1)), speed=float(raw.get("speed", 60.0))
    )


#: The built-in scenario `watcherd sim` serves without --scenario: six jobs in varied states.
DEFAULT_SCENARIO: Final[Mapping[str, Any]] = {
    "seed": 1,
    "speed": 60,
    "jobs": [
        {"suffix": "done-sft", "created": "-2h", "steps": 60, "seconds_per_step": 20},
        {"suffix": "done-dpo", "method": "dpo", "created": "-3h", "steps": 80, "eval_steps": 10},
        {"suffix": "long-run", "created": "-10m", "steps": 2000, "seconds_per_step": 6},
        {"suffix": "dpo-live", "method": "dpo", "lora": False, "created": "-5m", "steps": 600},
        {"suffix": "diverges", "created": "-20m", "steps": 300, "seconds_per_step": 4}
        | {"final": "error", "error_at_step": 200, "diverge_at": 150},
        {"suffix": "waiting", "created": "-1m", "stay": "queued"},
    ],
}
