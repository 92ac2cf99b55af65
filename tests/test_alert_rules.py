"""The alert rules over simulated jobs: each fires on its scenario, never on healthy ones."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from msgspec.structs import replace

from tests.alertharness import (
    EVAL_OVERFIT,
    LONG_QUEUE,
    PLATEAU,
    SLOW_AFTER_EPOCH_1,
    SLOW_DIVERGENCE,
    STALL,
    START,
    SUDDEN_NAN,
    healthy_specs,
    replay,
    world_of,
)
from tests.battery.sizes import sized
from watcherd.alerts.episodes import Observation, evaluate
from watcherd.alerts.state import AlertState
from watcherd.config.alerting import AlertsConfig, DivergingRule
from watcherd.model import MetricFilter


def _run(spec: dict[str, Any], **kwargs: Any) -> Any:
    world, clock = world_of(spec)
    return world, replay(world, clock, world.job_ids()[0], **kwargs)


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        (SUDDEN_NAN, "nonfinite"),
        (SLOW_DIVERGENCE, "diverging"),
        (EVAL_OVERFIT, "diverging"),
        (STALL, "stalled"),
        (LONG_QUEUE, "queued_long"),
        (SLOW_AFTER_EPOCH_1, "overrun"),
    ],
)
def test_each_rule_fires_once_on_its_scenario(spec: dict[str, Any], rule: str) -> None:
    """The scenario opens exactly one episode of its rule, resolved by the end of the job."""
    _, seen = _run(spec)
    opened = seen.opened(rule)
    assert [(c.rule, c.episode) for c in opened] == [(rule, 1)]
    assert [c.rule for c in seen.changes if not c.opened].count(rule) == 1
    assert opened[0].details["message"]


def test_sudden_nan_is_caught_within_one_metrics_interval() -> None:
    """A NaN logged at step 120 opens `nonfinite` with the step and key, within 5 minutes."""
    world, seen = _run(SUDDEN_NAN)
    first_nan = world.job(world.job_ids()[0]).step_time(120)
    (alert,) = seen.opened("nonfinite")
    assert alert.details["key"] == "train/loss"
    assert alert.details["step"] == 120  # where the NaN run began, not the newest step
    assert first_nan is not None and 0 <= alert.at - first_nan <= 300


def test_a_stall_opens_after_its_limit_and_resolves_when_steps_come_again() -> None:
    """`stalled` opens after the adaptive limit (10 min floor) and clears when rows resume."""
    world, seen = _run(STALL)
    stall_start = world.job(world.job_ids()[0]).step_time(100)
    opened, resolved = (c for c in seen.changes if c.rule == "stalled")
    assert (opened.opened, resolved.opened) == (True, False)
    assert stall_start is not None and 600 <= opened.at - stall_start <= 600 + 60
    assert opened.details["threshold"] == 600.0
    resumed = world.job(world.job_ids()[0]).step_time(101)
    assert resumed is not None and resolved.at < resumed + 300


def test_long_queue_names_the_queue_depth() -> None:
    """`queued_long` opens an hour after creation, with the service's queue_depth."""
    _, seen = _run(LONG_QUEUE)
    (alert,) = seen.opened("queued_long")
    assert 3600 <= alert.at - START < 3600 + 60
    assert "queue depth" in alert.details["message"]
    assert alert.details["queue_depth"] >= 0


@pytest.mark.parametrize("spec", [PLATEAU, *healthy_specs(sized(12, 200))])
def test_healthy_jobs_raise_no_alert(spec: dict[str, Any]) -> None:
    """Noisy, plateauing, multi-epoch, SFT and DPO jobs that end well never trip a rule."""
    _, seen = _run(spec, metrics_every=60)
    assert seen.opened() == []


def test_a_page_seen_twice_changes_nothing() -> None:
    """Evaluating the same rows again (a re-poll) leaves the rule memory and episodes alone."""
    world, clock = world_of(EVAL_OVERFIT)
    job_id = world.job_ids()[0]
    clock.advance(2000)
    rows = world.metrics(job_id, MetricFilter(), clock())
    obs = Observation(clock(), "running", world.job_object(job_id), rows, True)
    once = evaluate(AlertsConfig(), AlertState(), obs)
    twice = evaluate(AlertsConfig(), once.state, obs)
    assert replace(twice.state, metrics_at=None) == replace(once.state, metrics_at=None)
    assert twice.changes == ()


def test_the_state_survives_its_json() -> None:
    """The rule memory stored in the job row reads back equal (NaN included)."""
    world, clock = world_of(SUDDEN_NAN)
    seen = replay(world, clock, world.job_ids()[0], until=START + 1500)
    assert seen.last is not None
    state = seen.last.state
    assert AlertState.from_json(state.to_json()).to_json() == state.to_json()
    assert AlertState.from_json("not json") == AlertState()


def test_the_state_json_says_what_asdict_wrote() -> None:
    """The stored rule memory holds what `json.dumps` of its fields wrote before (the
    stored format), field for field and value for value, NaN included."""
    world, clock = world_of(SUDDEN_NAN)
    seen = replay(world, clock, world.job_ids()[0], until=START + 1500)
    assert seen.last is not None
    world, clock = world_of(SUDDEN_NAN)
    finite = replay(world, clock, world.job_ids()[0], until=START + 600).last
    assert finite is not None
    for state in (seen.last.state, finite.state, AlertState()):
        fields = {name: getattr(state, name) for name in state.__struct_fields__}
        before = json.dumps(fields, separators=(",", ":"), allow_nan=True)
        assert json.dumps(json.loads(state.to_json()), separators=(",", ":")) == before


def test_a_disabled_rule_stays_silent() -> None:
    """`enabled: false` turns a rule off."""
    config = dataclasses.replace(AlertsConfig(), diverging=DivergingRule(enabled=False))
    _, seen = _run(SLOW_DIVERGENCE, config=config)
    assert seen.opened() == []


@pytest.mark.parametrize(
    ("spec", "at", "source"),
    [
        (SLOW_AFTER_EPOCH_1 | {"estimate": False}, 600, "step_rate"),
        (SLOW_AFTER_EPOCH_1 | {"estimate": False}, 1300, "first_epoch"),
        (SLOW_AFTER_EPOCH_1, 600, "service"),
    ],
)
def test_eta_says_where_it_came_from(spec: dict[str, Any], at: float, source: str) -> None:
    """Without the service's estimate, the ETA is the step rate, then first epoch x n_epochs."""
    world, clock = world_of(spec)
    seen = replay(world, clock, world.job_ids()[0], until=START + at)
    assert seen.last is not None and seen.last.eta is not None
    assert seen.last.eta.source == source
    if source == "first_epoch":  # epoch 1 took 1,000 s: 3 epochs end 3,000 s after the start
        assert seen.last.eta.at == pytest.approx(START + 35 + 3000, abs=15)


def test_cancel_is_decided_once_for_an_armed_rule() -> None:
    """With `action: cancel` armed, the opening of that rule decides a cancel, once."""
    armed = dataclasses.replace(
        AlertsConfig(), nonfinite=dataclasses.replace(AlertsConfig().nonfinite, action="cancel")
    )
    world, clock = world_of(SUDDEN_NAN)
    job_id = world.job_ids()[0]
    state, decided = AlertState(), []
    for _ in range(40):
        clock.advance(60)
        rows = world.metrics(job_id, MetricFilter(), clock())
        obs = Observation(clock(), "running", world.job_object(job_id), rows, True)
        result = evaluate(armed, state, obs, allow_cancel=True)
        state = result.state
        decided += [result.cancel] if result.cancel else []
    assert [f.rule for f in decided] == ["nonfinite"]
    assert state.cancel == "nonfinite"
