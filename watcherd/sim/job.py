"""One simulated job: its spec, planned timeline and history, fixed at creation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from watcherd.sim.history import History, RowPlan
from watcherd.sim.scenario import JobSpec
from watcherd.sim.timeline import Timeline, build_timeline
from watcherd.sim.values import Curves

#: Nano-dollars a step costs (LoRA SFT); full training and DPO cost more.
_STEP_PRICE = 2_500_000


@dataclass(frozen=True, slots=True)
class SimJob:
    """A job as the world holds it; a cancel replaces it with a new one."""

    id: str
    seed: int
    spec: JobSpec
    user_id: str
    timeline: Timeline
    history: History
    restarted_as: str | None = None  # the job the service restarted this one as
    from_checkpoint: str | None = None  # `ft-OLD:STEP` for a job that continues another

    @classmethod
    def make(
        cls,
        job_id: str,
        seed: int,
        spec: JobSpec,
        created: float,
        cancel_at: float | None = None,
        *,
        restarted_as: str | None = None,
        from_checkpoint: str | None = None,
    ) -> SimJob:
        """Plan a job created at `created` (sim epoch seconds)."""
        timeline = build_timeline(spec, created, cancel_at)
        plan = row_plan(spec, seed, timeline.run_start)
        cutoff = None if timeline.cutoff is None else math.floor(timeline.cutoff * 1e9)
        history = History.build(plan, timeline.last_step, cutoff)
        user = "sim-user"
        return cls(job_id, seed, spec, user, timeline, history, restarted_as, from_checkpoint)

    @property
    def step_price(self) -> int:
        """Nano-dollars one training step costs."""
        factor = (1 if self.spec.lora else 3) * (2 if self.spec.method == "dpo" else 1)
        return _STEP_PRICE * factor

    @property
    def price(self) -> int:
        """total_price in nano-dollars once every planned step is trained."""
        return self.spec.steps * self.step_price

    def price_at(self, now: float) -> int:
        """total_price at `now`: it grows with every step trained, and stays after."""
        trained = self.last_visible_step(math.floor(now * 1e9))
        return trained * self.step_price

    def last_visible_step(self, now_ns: int) -> int:
        """The highest step among rows visible at `now_ns` (0 if none)."""
        end = self.history.visible_end(now_ns)
        plan = self.history.plan
        return 0 if plan is None or end == 0 else plan.locate(end - 1)[0]

    def step_time(self, step: int) -> float | None:
        """Sim time at which `step` is logged, if the job ever trains."""
        start = self.timeline.run_start
        if start is None:
            return None
        stalled = self.spec.stall_at is not None and step > self.spec.stall_at
        return start + step * self.spec.seconds_per_step + (self.spec.stall_for if stalled else 0)


def row_plan(spec: JobSpec, seed: int, run_start: float | None) -> RowPlan | None:
    """The row plan of a job that starts training at `run_start` (None: never trains)."""
    if run_start is None:
        return None
    curves = Curves(
        seed=seed,
        steps=spec.steps,
        steps_per_epoch=spec.steps / spec.n_epochs,
        dpo=spec.method == "dpo",
        learning_rate=spec.learning_rate,
        cosine=spec.lr_scheduler == "cosine",
        diverge_at=spec.diverge_at,
        drift_at=spec.drift_at,
        drift=spec.drift,
        plateau_at=spec.plateau_at,
    )
    plan = RowPlan(
        curves,
        round(run_start * 1e6) * 1000,
        round(spec.seconds_per_step * 1e9),
        spec.eval_steps,
        0,
        spec.stall_at,
        round(spec.stall_for * 1e9),
    )
    return dataclasses.replace(plan, total_rows=plan.rows_through(spec.steps))
