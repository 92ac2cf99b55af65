"""The simulator's event logs and prices: consistent with each job's history."""

from __future__ import annotations

from typing import Any

import pytest
from together.types.finetune_event_type import FinetuneEventType

from tests.simharness import NOW
from watcherd.eventlog import PROBLEM_TYPES, event_type, reason, restart_target
from watcherd.sim import ManualClock, ScenarioError, World, load_scenario

#: One job of each ending, all finished an hour before NOW but the live one.
ENDINGS: dict[str, Any] = {
    "seed": 11,
    "jobs": [
        {"suffix": "done", "created": "-2h", "steps": 40, "n_checkpoints": 3, "wandb": True},
        {"suffix": "nan", "created": "-2h", "steps": 30, "diverge_at": 12},
        {"suffix": "crash", "created": "-2h", "steps": 50, "final": "error", "error_at_step": 20},
        {"suffix": "billing", "created": "-2h", "steps": 50, "final": "error"}
        | {"billing_limit": True, "error_at_step": 30},
        {"suffix": "baddata", "created": "-2h", "final": "user_error"},
        {"suffix": "stopped", "created": "-2h", "final": "cancelled", "cancel_at": 120},
        {"suffix": "restart", "created": "-2h", "steps": 40, "restart_at_step": 15},
        {"suffix": "live", "created": "-10m", "steps": 500, "seconds_per_step": 3},
    ],
}
LOWER_TYPES = set(FinetuneEventType.__args__)  # type: ignore[attr-defined]


def _world(scenario: dict[str, Any] = ENDINGS) -> tuple[World, dict[str, str]]:
    """The world, and each suffix's first job (a restart's new job shares its suffix)."""
    world = World(scenario, clock=ManualClock(NOW))
    ids: dict[str, str] = {}
    for job_id in world.job_ids():
        ids.setdefault(str(world.job(job_id).spec.suffix), job_id)
    return world, ids


def test_every_type_is_one_the_sdk_names_in_either_casing() -> None:
    """Lower-case types are the generated enum's; upper-case ones the hand-written enum's."""
    upper_names = {"COMPRESSING_MODEL", "JOB_USER_ERROR"} | {t.upper() for t in LOWER_TYPES}
    world, _ = _world()
    for job_id in world.job_ids():
        for event in world.events(job_id):
            assert event["type"] in LOWER_TYPES | upper_names, event
            assert event["object"] == "fine-tune-event" and event["message"]


def test_both_casings_appear_across_seeds() -> None:
    """Some jobs spell `JOB_PENDING`/`Info`, others `job_pending`/`info`."""
    world, _ = _world()
    first = {world.events(j)[0]["type"] for j in world.job_ids()}
    levels = {world.events(j)[0]["level"] for j in world.job_ids()}
    assert first == {"job_pending", "JOB_PENDING"}
    assert levels == {"info", "Info"}


def test_logs_follow_the_timeline_and_stop_at_now() -> None:
    """Events are in time order, none after `now`, and the log grows as the clock runs."""
    world, ids = _world()
    live = ids["live"]
    before = world.events(live)
    later = world.events(live, NOW + 3600)
    assert later[: len(before)] == before and len(later) > len(before)
    for job_id in world.job_ids():
        stamps = [e["created_at"] for e in world.events(job_id)]
        assert stamps == sorted(stamps)
    kinds = [event_type(e) for e in later]
    assert kinds[0] == "job_pending" and kinds[-1] == "job_complete"
    assert kinds.count("epoch_complete") == 1 and "training_start" in kinds


@pytest.mark.parametrize(
    ("suffix", "status", "words"),
    [
        ("done", "completed", "Fine-tuning job completed"),
        ("nan", "completed", "Training loss is NaN at step 12"),
        ("crash", "error", "at step 20"),
        ("billing", "error", "Billing limit reached"),
        ("baddata", "user_error", ""),
        ("stopped", "cancelled", "Job cancelled by the user"),
        ("restart", "error", "at step 15"),
    ],
)
def test_every_ending_logs_its_reason(suffix: str, status: str, words: str) -> None:
    """Each terminal job's log says why it ended, in the words `reason` picks."""
    world, ids = _world()
    job_id = ids[suffix]
    assert world.status_at(job_id) == status
    events = world.events(job_id)
    why = reason(status, world.job_object(job_id), events)
    assert why is not None and words in why
    if status in ("error", "user_error"):
        assert any(event_type(e) in PROBLEM_TYPES for e in events)


def test_billing_limit_logs_a_refund_after_the_stop() -> None:
    """A billing-limit job logs `billing_limit` (level error) then `refund`."""
    world, ids = _world()
    kinds = [(event_type(e), str(e["level"]).lower()) for e in world.events(ids["billing"])]
    assert kinds[-2:] == [("billing_limit", "error"), ("refund", "info")]


def test_restart_names_a_new_job_that_continues_from_the_checkpoint() -> None:
    """`job_restarted` names a job created after the failure, from the old job's checkpoint."""
    world, ids = _world()
    old = ids["restart"]
    last = world.events(old)[-1]
    new = restart_target(last, old)
    assert new is not None and new in world.job_ids() and new != old
    assert world.job_object(new)["from_checkpoint"] == f"{old}:15"
    assert world.job(new).spec.steps == 25
    assert world.job(new).timeline.created > world.transitions(old)[-1][0]
    assert world.status_at(new) == "completed"


def test_price_grows_while_running_and_stays_after() -> None:
    """total_price is 0 before training, grows with each step, and is kept once done."""
    world, ids = _world()
    live = ids["live"]
    prices = [world.job_object(live, NOW + dt)["total_price"] for dt in (0, 300, 600, 9000)]
    assert 0 < prices[0] < prices[1] < prices[2] <= prices[3]
    assert world.job_object(ids["baddata"])["total_price"] == 0
    crash, done = world.job_object(ids["crash"]), world.job_object(ids["done"])
    assert crash["total_price"] == 20 * world.job(ids["crash"]).step_price
    assert done["total_price"] == world.job(ids["done"]).price


def test_checkpoint_and_upload_events_carry_paths() -> None:
    """checkpoint_save events carry checkpoint_path; the upload carries model_path; W&B its URL."""
    world, ids = _world()
    events = world.events(ids["done"])
    saves = [e for e in events if event_type(e) == "checkpoint_save"]
    assert [e["step"] for e in saves] == [13, 27]
    assert all(e["checkpoint_path"].endswith(f"checkpoint-{e['step']}") for e in saves)
    assert any("model_path" in e for e in events if event_type(e) == "model_upload_complete")
    wandb = world.job_object(ids["done"])["wandb_url"]
    assert wandb and any(e.get("wandb_url") == wandb for e in events)


def test_restart_and_billing_keys_are_validated() -> None:
    """billing_limit needs final: error; restart_at_step must lie within the steps."""
    with pytest.raises(ScenarioError, match="billing_limit"):
        load_scenario({"jobs": [{"billing_limit": True}]})
    with pytest.raises(ScenarioError, match="restart_at_step"):
        load_scenario({"jobs": [{"steps": 10, "restart_at_step": 10}]})
