"""A poll reads only the job fields the rules and the spend need, and keeps the rules'
memory as its stored text; both must decide exactly as the whole object and the
objects did."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.alertharness import (
    LONG_QUEUE,
    SLOW_AFTER_EPOCH_1,
    STALL,
    START,
    SUDDEN_NAN,
    healthy_specs,
    world_of,
)
from watcherd.alerts.episodes import Observation, evaluate
from watcherd.alerts.state import AlertState
from watcherd.api.shapes import JOB_FACTS, job_from_body, jobs_from_body
from watcherd.config.alerting import AlertsConfig
from watcherd.eventlog import price_facts
from watcherd.model import MetricFilter, dumps_exact, is_terminal

JOB_ID = "ft-00000000-0000-4000-8000-000000000001"


class Spy(dict[str, Any]):
    """A job object that notes every field read from it."""

    read: set[str]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


def _life(spec: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]], bool]]:
    """(job object, new rows, fetched) for each minute of one simulated job's life."""
    world, clock = world_of(spec)
    job_id = world.job_ids()[0]
    polls, cursor = [], None
    while clock() <= START + 86_400.0:
        job = world.job_object(job_id, clock())
        fetched = job["status"] not in ("pending", "queued")
        flt = MetricFilter(global_step_from=cursor)
        rows = world.metrics(job_id, flt, clock()) if fetched else []
        if rows:
            cursor = max(int(r["train/global_step"]) for r in rows)
        polls.append((job, rows, fetched))
        if is_terminal(job["status"]):
            break
        clock.advance(300.0)
    return polls


LIVES = [SUDDEN_NAN, STALL, LONG_QUEUE, SLOW_AFTER_EPOCH_1, *healthy_specs(4, seed=3)]


@pytest.mark.parametrize("spec", LIVES)
def test_the_rules_decide_on_the_facts_as_on_the_whole_object(spec: dict[str, Any]) -> None:
    """Fed `Job.facts()` instead of the whole object, the rules reach the same verdicts,
    the spend the same price, and neither reads a field outside `JOB_FACTS`."""
    config, whole, facts_only = AlertsConfig(), AlertState(), AlertState()
    read: set[str] = set()
    for n, (obj, rows, fetched) in enumerate(_life(spec)):
        now = START + 300.0 * n
        spy = Spy(obj)
        spy.read = read
        facts = job_from_body(dumps_exact(obj).encode()).facts()
        status = obj["status"]
        by_whole = evaluate(config, whole, Observation(now, status, spy, rows, fetched))
        by_facts = evaluate(config, facts_only, Observation(now, status, facts, rows, fetched))
        assert by_facts == by_whole
        assert price_facts(facts) == price_facts(spy)
        whole, facts_only = by_whole.state, by_facts.state
    assert read and read <= set(JOB_FACTS)


def test_facts_from_a_listing_and_from_a_body_msgspec_refuses() -> None:
    """A listed job's facts are its object's fields, exact; a job holding a bare NaN
    (msgspec refuses it) gives the same fields by the exact path."""
    obj = {
        "id": JOB_ID,
        "status": "running",
        "created_at": "2026-05-19T13:05:40Z",
        "total_price": 123456789012345678901234567890,
        "token_count": 1.5e3,
        "progress": {"estimate_available": True, "seconds_remaining": 99801},
        "queue_depth": None,
    }
    expected = {key: obj.get(key) for key in JOB_FACTS}
    listed = jobs_from_body(json.dumps({"data": [obj]}).encode())
    assert listed[0].facts() == expected
    refused = job_from_body(json.dumps(obj | {"learning_rate": math.nan}).encode())
    assert refused.facts() == expected


def test_the_memory_reads_back_from_either_writer() -> None:
    """The rules' memory written by msgspec (finite) or by `json.dumps` (NaN, and the
    text older versions stored) reads back as the same state."""
    finite = AlertState(
        seen={"train": 14},
        latest={"train/loss": (14, 1e-05)},
        step_secs=(9.5, 1e16),
        last_train=(14, 1_779_196_116_512_205_286),
        run_start=1_779_195_975.0,
        epoch=(0.0014, 1_779_196_116.5),
    )
    for state in (finite, AlertState(latest={"eval/loss": (20, math.nan)}, max_step=20)):
        stored = state.to_json()
        back = AlertState.from_json(stored)
        assert back.to_json() == stored
        fields = {name: getattr(state, name) for name in state.__struct_fields__}
        older = json.dumps(fields, separators=(",", ":"), allow_nan=True)
        assert AlertState.from_json(older).to_json() == stored
    assert AlertState.from_json(finite.to_json()) == finite
