"""A job's life as a list of (sim time, status) phases, built from its JobSpec."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from watcherd.model import TERMINAL_STATUSES
from watcherd.sim.scenario import JobSpec

#: Sim seconds between the last logged row's step time and the end of training.
_TAIL = 1.0


@dataclass(frozen=True, slots=True)
class Timeline:
    """When a job enters each status, and which part of its history it logs."""

    phases: tuple[tuple[float, str], ...]  # (sim epoch seconds, status), ascending
    run_start: float | None  # when training starts; None if it never does
    last_step: int  # the last step it logs (before any cutoff)
    cutoff: float | None = None  # no row logged after this time (a cancel)

    @property
    def created(self) -> float:
        """When the job was created."""
        return self.phases[0][0]

    @property
    def final(self) -> tuple[float, str] | None:
        """(time, status) of its terminal phase, if its life has one."""
        last = self.phases[-1]
        return last if last[1] in TERMINAL_STATUSES else None

    def _index(self, now: float) -> int:
        return bisect.bisect_right([t for t, _ in self.phases], now) - 1

    def status_at(self, now: float) -> str | None:
        """The status at `now`, or None before the job exists."""
        i = self._index(now)
        return self.phases[i][1] if i >= 0 else None

    def changed_at(self, now: float) -> float:
        """When the status current at `now` began."""
        return self.phases[max(self._index(now), 0)][0]

    def next_change(self, now: float) -> float | None:
        """When the status next changes after `now`, if it ever does."""
        i = self._index(now) + 1
        return self.phases[i][0] if i < len(self.phases) else None

    def transitions(self, now: float | None = None) -> list[tuple[float, str]]:
        """The (time, status) phases, all of them or those begun by `now`."""
        return [p for p in self.phases if now is None or p[0] <= now]

    def cancellable(self, now: float) -> bool:
        """True if a cancel request at `now` would be accepted."""
        status = self.status_at(now)
        return status is not None and status not in TERMINAL_STATUSES | {"cancel_requested"}


def build_timeline(spec: JobSpec, created: float, cancel_at: float | None = None) -> Timeline:
    """The planned life of a job created at `created`, cancelled at `cancel_at` if given."""
    if cancel_at is None and spec.final == "cancelled" and spec.cancel_at is not None:
        cancel_at = created + spec.cancel_at
    natural = _natural(spec, created)
    return natural if cancel_at is None else _cancel(natural, cancel_at, spec.cancel_delay)


def _natural(spec: JobSpec, created: float) -> Timeline:
    """The life without any cancel."""
    t = created + spec.pending
    phases = [(created, "pending"), (t, "queued")]
    if spec.stay == "queued":
        return Timeline(tuple(phases), None, 0)
    t += spec.queue
    if spec.final == "user_error":
        return Timeline((*phases, (t, "user_error")), None, 0)
    run_start = t
    last = spec.last_step
    t = run_start + (last + 0.5) * spec.seconds_per_step + _TAIL
    if spec.stall_at is not None and spec.stall_at < last:
        t += spec.stall_for
    phases.append((run_start, "running"))
    if spec.fails:
        phases.append((t, "error"))
        return Timeline(tuple(phases), run_start, last)
    if spec.compress > 0:
        phases.append((t, "compressing"))
        t += spec.compress
    phases.append((t, "uploading"))
    phases.append((t + spec.upload, "completed"))
    return Timeline(tuple(phases), run_start, last)


def _cancel(natural: Timeline, at: float, delay: float) -> Timeline:
    """`natural` cut by a cancel request at `at` (no effect once it is terminal)."""
    kept = [p for p in natural.phases if p[0] <= at]
    if not kept or kept[-1][1] in TERMINAL_STATUSES | {"cancel_requested"}:
        return natural
    phases = (*kept, (at, "cancel_requested"), (at + max(delay, 0.001), "cancelled"))
    run_start = natural.run_start
    if run_start is not None and run_start > at:
        run_start = None
    return Timeline(phases, run_start, natural.last_step if run_start is not None else 0, cutoff=at)
