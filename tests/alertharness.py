"""Replaying a simulated job through the alert rules, the way the poller would see it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from watcherd.alerts.episodes import AlertChange, Evaluation, Observation, evaluate
from watcherd.alerts.rules import stall_check_due
from watcherd.alerts.state import AlertState
from watcherd.config.alerting import AlertsConfig
from watcherd.model import MetricFilter, is_terminal
from watcherd.sim import ManualClock, World

#: 2026-05-19T13:06:40Z: a fixed sim start.
START = 1_779_196_000.0

#: The unhealthy scenarios, one per rule (SFT, 10 s steps, an eval every 20 steps).
BASE: dict[str, Any] = {"steps": 300, "seconds_per_step": 10, "eval_steps": 20}
SUDDEN_NAN = BASE | {"diverge_at": 120, "final": "error", "error_at_step": 160}
SLOW_DIVERGENCE = BASE | {"drift_at": 150}
EVAL_OVERFIT: dict[str, Any] = BASE | {"eval_steps": 10, "drift_at": 200, "drift": 0.01}
STALL = BASE | {"stall_at": 100, "stall_for": "1h"}
LONG_QUEUE: dict[str, Any] = {"queue": "2h", "steps": 50}
SLOW_AFTER_EPOCH_1 = BASE | {"n_epochs": 3, "stall_at": 150, "stall_for": "3h"}
PLATEAU = BASE | {"plateau_at": 60}


def healthy_specs(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` healthy jobs of varied shapes: SFT and DPO, noisy evals, epochs, plateaus."""
    rng = random.Random(seed)
    specs = []
    for _ in range(count):
        steps = rng.choice([20, 60, 200, 800])
        spec: dict[str, Any] = {
            "steps": steps,
            "seconds_per_step": rng.choice([2, 10, 30]),
            "eval_steps": rng.choice([0, 1, 5, 20]),
            "method": rng.choice(["sft", "dpo"]),
            "n_epochs": rng.choice([1, 2, 3]),
            "queue": rng.choice([30, 600, 3000]),
            "lr_scheduler": rng.choice(["cosine", "linear"]),
            "estimate": rng.random() < 0.5,
        }
        if rng.random() < 0.3:
            spec["plateau_at"] = steps // 4
        specs.append(spec)
    return specs


@dataclass
class Replay:
    """What the rules said over a job's life: every change and the last evaluation."""

    changes: list[AlertChange] = field(default_factory=list)
    last: Evaluation | None = None
    fetches: int = 0

    def opened(self, rule: str | None = None) -> list[AlertChange]:
        """The episodes opened (of one rule, or all)."""
        return [c for c in self.changes if c.opened and rule in (None, c.rule)]


def world_of(*jobs: dict[str, Any], seed: int = 5) -> tuple[World, ManualClock]:
    """A world of these jobs on a manual clock at START."""
    clock = ManualClock(START)
    return World({"seed": seed, "jobs": list(jobs)}, clock=clock), clock


def replay(
    world: World,
    clock: ManualClock,
    job_id: str,
    *,
    config: AlertsConfig | None = None,
    status_every: float = 60.0,
    metrics_every: float = 300.0,
    allow_cancel: bool = False,
    until: float | None = None,
) -> Replay:
    """Poll `job_id` every `status_every` sim seconds (metrics every `metrics_every`, and on
    every status change, as the poller does) until it ends; feed each poll to the rules."""
    config = config or AlertsConfig()
    out, state = Replay(), AlertState()
    status: str | None = None
    cursor: int | None = None
    metrics_due = 0.0
    end = until if until is not None else (world.done_at() or START + 86_400.0) + status_every
    while clock() <= end:
        now = clock()
        job = world.job_object(job_id, now)
        changed = job["status"] != status
        rows: list[dict[str, Any]] = []
        fetched = False
        look = stall_check_due(config.stalled, state, job["status"], now)
        running_or_after = job["status"] not in ("pending", "queued")
        if running_or_after and (changed or now >= metrics_due or look):
            rows = world.metrics(job_id, MetricFilter(global_step_from=cursor), now)
            fetched, metrics_due = True, now + metrics_every
            out.fetches += 1
            if rows:
                cursor = max(int(r["train/global_step"]) for r in rows)
        obs = Observation(now, job["status"], job, rows, fetched)
        out.last = evaluate(config, state, obs, allow_cancel=allow_cancel)
        state = out.last.state
        out.changes.extend(out.last.changes)
        status = job["status"]
        if is_terminal(status):
            break
        clock.advance(status_every)
    return out
