"""The simulated service's state: jobs on a sim clock, deterministic from a seed.

    world = World(load_scenario("demo.yaml"), clock=ManualClock())
    world.truth(job_id)              # every row the job will ever log
    world.visible_rows(job_id, now)  # the rows logged by `now`
    world.status_at(job_id, now)

Thread-safe: the server runs in one thread while a test reads the truth in another.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watcherd.model import MetricFilter, MetricRow
from watcherd.sim import events as event_log
from watcherd.sim import objects
from watcherd.sim.clock import Clock, SpeedClock
from watcherd.sim.create import spec_from_request
from watcherd.sim.job import SimJob
from watcherd.sim.scenario import DEFAULT_SCENARIO, JobSpec, Scenario, load_scenario


def continuation(spec: JobSpec) -> JobSpec:
    """The job a restart starts: the steps left, from the checkpoint, soon queued."""
    left = spec.steps - (spec.restart_at_step or 0)
    return dataclasses.replace(
        spec,
        restart_at_step=None,
        steps=left,
        n_epochs=1,
        n_checkpoints=1,
        eval_steps=min(spec.eval_steps, left),
        pending=2.0,
        queue=10.0,
        count=1,
    )


class UnknownJobError(KeyError):
    """No job with this ID."""


class CancelRefusedError(ValueError):
    """The job is already finished or being cancelled."""


def _ns(now: float) -> int:
    return math.floor(now * 1e9)


class World:
    """Jobs, their timelines and histories, and the sim clock they run on."""

    def __init__(
        self,
        scenario: Scenario | Mapping[str, Any] | str | Path | None = None,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        speed: float | None = None,
    ) -> None:
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(DEFAULT_SCENARIO if scenario is None else scenario)
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.speed = scenario.speed if speed is None else speed
        self.clock: Clock = clock if clock is not None else SpeedClock(self.speed)
        self.t0 = self.clock()
        self._rng = random.Random(self.seed)
        self._jobs: dict[str, SimJob] = {}
        self._lock = threading.RLock()
        for spec in scenario.jobs:
            self.add(spec, created=self.t0 + spec.created)

    def now(self) -> float:
        """The sim clock: epoch seconds."""
        return self.clock()

    def _when(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def add(self, spec: JobSpec, created: float | None = None) -> str:
        """Add a job (ID and seed drawn from the world's RNG) and return its ID.

        A job with `restart_at_step` fails there and is restarted as a second job,
        added too (created when the first one fails), which trains the other steps.
        """
        with self._lock:
            job_id, seed = self._draw()
            start = self._when(None) if created is None else created
            if spec.restart_at_step is None:
                self._jobs[job_id] = SimJob.make(job_id, seed, spec, start)
                return job_id
            new_id, new_seed = self._draw()
            job = SimJob.make(job_id, seed, spec, start, restarted_as=new_id)
            self._jobs[job_id] = job
            failed_at = job.timeline.phases[-1][0]
            rest = continuation(spec)
            checkpoint = f"{job_id}:{spec.restart_at_step}"
            self._jobs[new_id] = SimJob.make(
                new_id, new_seed, rest, failed_at + 1.0, from_checkpoint=checkpoint
            )
            return job_id

    def _draw(self) -> tuple[str, int]:
        """A new job ID and seed from the world's RNG."""
        job_id = "ft-" + str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        return job_id, self._rng.getrandbits(63)

    def job(self, job_id: str) -> SimJob:
        """The job with this ID; UnknownJobError if there is none."""
        with self._lock:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise UnknownJobError(job_id) from None

    def job_ids(self) -> list[str]:
        """Every job ID, in creation order."""
        with self._lock:
            return list(self._jobs)

    def truth(self, job_id: str) -> list[MetricRow]:
        """Every row the job will ever log (copies), in API order."""
        history = self.job(job_id).history
        return [dict(r) for r in history.rows(0, history.end)]

    def visible_rows(self, job_id: str, now: float | None = None) -> list[MetricRow]:
        """The rows logged by `now` (copies), in API order."""
        history = self.job(job_id).history
        return [dict(r) for r in history.rows(0, history.visible_end(_ns(self._when(now))))]

    def metrics(self, job_id: str, flt: MetricFilter, now: float | None = None) -> list[MetricRow]:
        """`list_metrics` at `now` (the rows are shared: do not mutate them)."""
        return self.job(job_id).history.query(flt, _ns(self._when(now)))

    def status_at(self, job_id: str, now: float | None = None) -> str | None:
        """The job's status at `now` (None before it exists)."""
        return self.job(job_id).timeline.status_at(self._when(now))

    def transitions(self, job_id: str, now: float | None = None) -> list[tuple[float, str]]:
        """(sim time, status) of every status the job enters (by `now`, if given)."""
        return self.job(job_id).timeline.transitions(now)

    def final_status(self, job_id: str) -> str | None:
        """The terminal status the job is headed for, if its life ends."""
        final = self.job(job_id).timeline.final
        return None if final is None else final[1]

    def done_at(self) -> float | None:
        """When the last job turns terminal; None if some job never does."""
        finals = [self.job(j).timeline.final for j in self.job_ids()]
        return (
            None
            if any(f is None for f in finals)
            else max((f[0] for f in finals if f), default=self.t0)
        )

    def job_object(self, job_id: str, now: float | None = None) -> dict[str, Any]:
        """GET /v1/fine-tunes/{id} at `now`."""
        return objects.job_object(self.job(job_id), self._when(now))

    def list_objects(self, now: float | None = None) -> list[dict[str, Any]]:
        """GET /v1/fine-tunes at `now`: truncated objects of the jobs created by then."""
        at = self._when(now)
        jobs = [self.job(j) for j in self.job_ids()]
        return [objects.job_object(j, at, truncated=True) for j in jobs if j.timeline.created <= at]

    def events(self, job_id: str, now: float | None = None) -> list[dict[str, Any]]:
        """GET /v1/fine-tunes/{id}/events at `now`."""
        return event_log.events(self.job(job_id), self._when(now))

    def checkpoints(self, job_id: str, now: float | None = None) -> list[dict[str, Any]]:
        """GET /v1/fine-tunes/{id}/checkpoints at `now`."""
        return objects.checkpoints(self.job(job_id), self._when(now))

    def cancel(self, job_id: str, now: float | None = None) -> dict[str, Any]:
        """Request a cancel at `now` and return the truncated job object."""
        at = self._when(now)
        with self._lock:
            job = self.job(job_id)
            if not job.timeline.cancellable(at):
                raise CancelRefusedError(f"job {job_id} is {job.timeline.status_at(at)}")
            new = SimJob.make(
                job.id,
                job.seed,
                job.spec,
                job.timeline.created,
                cancel_at=at,
                restarted_as=job.restarted_as,
                from_checkpoint=job.from_checkpoint,
            )
            self._jobs[job_id] = new
        return objects.job_object(new, at, truncated=True)

    def create(self, body: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """POST /v1/fine-tunes: a new job from a request body (ValueError if invalid)."""
        at = self._when(now)
        job_id = self.add(spec_from_request(body), created=at)
        return objects.job_object(self.job(job_id), at)
