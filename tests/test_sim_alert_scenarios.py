"""The simulator's alert scenarios: NaN, slow divergence, plateau, stall, long queue, cancel."""

from __future__ import annotations

import math
from pathlib import Path

from tests.alertharness import (
    LONG_QUEUE,
    PLATEAU,
    SLOW_DIVERGENCE,
    STALL,
    START,
    replay,
    world_of,
)
from watcherd.model import MetricFilter
from watcherd.sim import ManualClock, Scenario, World, demo_scenario_path, load_scenario


def _losses(spec: dict[str, object]) -> dict[int, float]:
    world, _ = world_of(spec)
    rows = world.truth(world.job_ids()[0])
    return {r["train/global_step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_slow_divergence_grows_the_loss_after_drift_at() -> None:
    """From `drift_at` on the train loss climbs steadily, finite, well above its best."""
    loss = _losses(SLOW_DIVERGENCE)
    assert all(math.isfinite(v) for v in loss.values())
    assert loss[300] > 4 * min(loss[s] for s in range(1, 151))
    assert loss[200] > loss[160]


def test_a_plateau_stops_improving_but_stays_finite() -> None:
    """After `plateau_at` the curve is flat: the last loss is near the plateau's, not lower."""
    loss = _losses(PLATEAU)
    assert abs(loss[300] - loss[60]) < 0.1 * loss[60]
    assert loss[60] > loss[300] * 0.9


def test_a_stall_keeps_running_with_no_new_rows() -> None:
    """During `stall_for` the job is `running` and its newest step does not move."""
    world, _ = world_of(STALL)
    job = world.job_ids()[0]
    stalled_from = world.job(job).step_time(100)
    assert stalled_from is not None
    steps = []
    for minutes in (1, 20, 50):
        at = stalled_from + 60 * minutes
        assert world.status_at(job, at) == "running"
        steps.append(world.job_object(job, at)["steps_completed"])
    assert steps == [100, 100, 100]
    after = world.metrics(job, MetricFilter(global_step_from=101), stalled_from + 3700)
    assert after and after[0]["train/global_step"] == 101


def test_a_long_queue_moves_its_queue_depth() -> None:
    """Queued for two hours, `queue_depth` falls as the start draws near."""
    world, _ = world_of(LONG_QUEUE)
    job = world.job_ids()[0]
    depths = [int(world.job_object(job, START + t)["queue_depth"]) for t in (60, 3600, 7100)]
    assert depths[0] > depths[1] > depths[2] >= 0


def test_cancel_moves_running_to_cancel_requested_then_cancelled() -> None:
    """A cancel on a running job: cancel_requested at once, cancelled after cancel_delay."""
    world, clock = world_of({"steps": 300, "seconds_per_step": 10, "cancel_delay": 30})
    job = world.job_ids()[0]
    clock.advance(600)
    assert world.cancel(job)["status"] == "cancel_requested"
    assert world.status_at(job, START + 620) == "cancel_requested"
    assert world.status_at(job, START + 640) == "cancelled"
    assert max(r["train/global_step"] for r in world.truth(job)) < 60


def test_without_an_estimate_progress_says_so() -> None:
    """`estimate: false` turns `progress.estimate_available` off."""
    world, clock = world_of({"steps": 100, "estimate": False})
    clock.advance(100)
    progress = world.job_object(world.job_ids()[0])["progress"]
    assert progress["estimate_available"] is False


def test_the_shipped_alert_scenario_trips_each_rule_once() -> None:
    """scenarios/alerts.yaml: each job opens the rules its comment names, healthy ones none."""
    scenario = load_scenario(str(Path(demo_scenario_path()).with_name("alerts.yaml")))
    expected = {
        "sudden-nan": ["nonfinite"],
        "slow-divergence": ["diverging"],
        "stall": ["overrun", "stalled"],  # an hour's stall also overruns a 50-minute job
        "long-queue": ["queued_long"],
        "slow-epochs": ["overrun", "stalled"],
        "plateau": [],
        "healthy-dpo": [],
    }
    for spec in scenario.jobs:
        clock = ManualClock(START)
        world = World(Scenario((spec,), seed=scenario.seed), clock=clock)
        seen = replay(world, clock, world.job_ids()[0])
        assert sorted(c.rule for c in seen.opened()) == expected[str(spec.suffix)], spec.suffix
