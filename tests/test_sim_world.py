"""The simulator's world model: timelines, histories, determinism, cancel and create."""

from __future__ import annotations

import math
import time

import pytest

from tests.simharness import NOW, SMALL_SCENARIO, small_world
from watcherd.model import MetricFilter, row_kind
from watcherd.sim import (
    CancelRefusedError,
    ManualClock,
    ScenarioError,
    UnknownJobError,
    World,
    demo_scenario_path,
    load_scenario,
)

DPO_TRAIN_KEYS = {
    "train/rewards/chosen",
    "train/rewards/rejected",
    "train/rewards/accuracies",
    "train/rewards/margins",
    "train/kl",
    "train/logps/chosen",
    "train/logps/rejected",
}


def test_same_seed_gives_same_ids_and_histories() -> None:
    """Two worlds from the same scenario and clock agree on IDs and every row."""
    a, _ = small_world()
    b, _ = small_world()
    assert a.job_ids() == b.job_ids()
    assert all(a.truth(j) == b.truth(j) for j in a.job_ids())
    assert all(j.startswith("ft-") and len(j) == 39 for j in a.job_ids())


def test_other_seed_gives_other_ids() -> None:
    """A different seed changes the job IDs."""
    a, _ = small_world()
    b = World(SMALL_SCENARIO, clock=ManualClock(NOW), seed=99)
    assert set(a.job_ids()).isdisjoint(b.job_ids())


def test_sft_rows_have_the_service_shape() -> None:
    """Train rows carry loss, grad_norm and lr; eval rows come every eval_steps, ~1 s later."""
    world, _ = small_world()
    rows = world.truth(world.job_ids()[0])
    train = [r for r in rows if row_kind(r) == "train"]
    evals = [r for r in rows if row_kind(r) == "eval"]
    assert [r["train/global_step"] for r in train] == list(range(1, 41))
    assert [r["train/global_step"] for r in evals] == [10, 20, 30, 40]
    assert all(isinstance(r["timestamp"], int) and "train/epoch" in r for r in rows)
    assert set(train[0]) == {"timestamp", "train/global_step", "train/epoch"} | {
        "train/loss",
        "train/grad_norm",
        "train/learning_rate",
    }
    by_step = {r["train/global_step"]: r["timestamp"] for r in train}
    assert all(0 < r["timestamp"] - by_step[r["train/global_step"]] <= 10**9 for r in evals)
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)


def test_dpo_rows_add_preference_metrics() -> None:
    """DPO train and eval rows carry rewards, accuracies, margins, KL and log-probs."""
    world, _ = small_world()
    rows = world.truth(world.job_ids()[1])
    train = next(r for r in rows if row_kind(r) == "train")
    evals = next(r for r in rows if row_kind(r) == "eval")
    assert set(train) >= DPO_TRAIN_KEYS
    assert {k.replace("train/", "eval/") for k in DPO_TRAIN_KEYS} | {"eval/loss"} <= set(evals)


def test_rows_become_visible_as_the_clock_passes_them() -> None:
    """visible_rows is the prefix of the truth stamped at or before now."""
    world, clock = small_world()
    live = world.job_ids()[2]
    truth = world.truth(live)
    seen = world.visible_rows(live)
    assert 0 < len(seen) < len(truth)
    assert seen == truth[: len(seen)]
    assert all(r["timestamp"] <= NOW * 1e9 for r in seen)
    clock.advance(3600)
    assert world.visible_rows(live) == truth


def test_statuses_follow_the_timeline() -> None:
    """A job passes pending, queued, running, compressing, uploading, completed in order."""
    world, _ = small_world()
    live = world.job_ids()[2]
    names = [s for _, s in world.transitions(live)]
    assert names == ["pending", "queued", "running", "compressing", "uploading", "completed"]
    assert world.status_at(live) == "running"
    for at, status in world.transitions(live):
        assert world.status_at(live, at) == status
    assert world.status_at(live, world.transitions(live)[0][0] - 1) is None


def test_finished_and_stuck_jobs() -> None:
    """The error job stops at its error step; the queued job stays queued with no rows."""
    world, clock = small_world()
    err, queued = world.job_ids()[4], world.job_ids()[3]
    assert world.status_at(err) == "error"
    assert max(r["train/global_step"] for r in world.truth(err)) == 20
    clock.advance(10**6)
    assert world.status_at(queued) == "queued"
    assert world.truth(queued) == []
    assert world.job_object(queued)["queue_depth"] >= 0


def test_divergence_gives_nan_loss() -> None:
    """From diverge_at on, train and eval loss are NaN."""
    spec = {"steps": 30, "diverge_at": 12, "created": "-1h"}
    world = World({"jobs": [spec]}, clock=ManualClock(NOW))
    rows = world.truth(world.job_ids()[0])
    loss: dict[tuple[int, str], float] = {
        (r["train/global_step"], row_kind(r)): r["train/loss"]
        if "train/loss" in r
        else r["eval/loss"]
        for r in rows
    }
    assert not math.isnan(loss[(11, "train")])
    assert math.isnan(loss[(12, "train")]) and math.isnan(loss[(20, "eval")])


def test_cancel_requests_then_cancels_and_cuts_history() -> None:
    """Cancel gives cancel_requested, cancelled soon after, and no rows after the request."""
    world, clock = small_world()
    live = world.job_ids()[2]
    obj = world.cancel(live)
    assert obj["status"] == "cancel_requested"
    clock.advance(60)
    assert world.status_at(live) == "cancelled"
    assert all(r["timestamp"] <= NOW * 1e9 for r in world.truth(live))
    with pytest.raises(CancelRefusedError):
        world.cancel(live)


def test_create_uses_defaults_and_sim_overrides() -> None:
    """A created job starts pending with defaults; `sim` overrides its planned life."""
    world, _ = small_world()
    obj = world.create({"training_file": "file-1", "model": "m/x", "sim": {"final": "error"}})
    assert obj["status"] == "pending" and obj["model"] == "m/x"
    assert world.final_status(obj["id"]) == "error"
    with pytest.raises(ValueError, match="training_file"):
        world.create({"model": "m/x"})


def test_unknown_job_raises() -> None:
    """Asking about an unknown ID raises UnknownJobError."""
    world, _ = small_world()
    with pytest.raises(UnknownJobError):
        world.truth("ft-nope")


def test_huge_job_answers_incremental_queries_fast() -> None:
    """A 200,000-step job answers a global_step_from query in milliseconds."""
    spec = {"steps": 200_000, "seconds_per_step": 1, "created": "-100h", "eval_steps": 100}
    world = World({"jobs": [spec]}, clock=ManualClock(NOW))
    job = world.job_ids()[0]
    start = time.perf_counter()
    rows = world.metrics(job, MetricFilter(global_step_from=150_000, global_step_to=150_200))
    assert time.perf_counter() - start < 0.5
    assert rows[0]["train/global_step"] == 150_000 and rows[-1]["train/global_step"] == 150_200
    assert len(rows) == 201 + 3


def test_scenarios_reject_unknown_keys_and_load_the_demo() -> None:
    """Unknown keys are errors; the demo's five jobs end within 30 s of wall time."""
    with pytest.raises(ScenarioError, match="bogus"):
        load_scenario({"jobs": [{"bogus": 1}]})
    demo = load_scenario(demo_scenario_path())
    world = World(demo, clock=ManualClock(0))
    finals = [world.final_status(j) for j in world.job_ids()]
    assert finals == ["completed", "completed", "error", "cancelled", None]
    ends = [world.transitions(j)[-1][0] for j in world.job_ids()]
    assert max(ends) / demo.speed <= 30
