"""When a job is expected to finish, and where that estimate came from.

The service's own `progress.seconds_remaining` wins when `estimate_available` says it
is usable (it counts to the next state). Otherwise, as Together's docs suggest, once
the first epoch is over its duration times `n_epochs` estimates the training; before
that, the rate at which `train/epoch` grows does (or `total_steps` at the median time
per step, when the job object has it). Sources: `service`, `first_epoch`, `step_rate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from watcherd.alerts.state import AlertState

SOURCES: Final = ("service", "first_epoch", "step_rate")


@dataclass(frozen=True, slots=True)
class Eta:
    """The expected end (epoch seconds) and its source (one of SOURCES)."""

    at: float
    source: str

    def remaining(self, now: float) -> float:
        """Seconds left at `now` (never negative)."""
        return max(0.0, self.at - now)


def number(value: Any) -> float | None:
    """A finite JSON number as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def service_eta(job: Mapping[str, Any] | None, now: float) -> Eta | None:
    """The service's estimate, when it says one is available."""
    progress = job.get("progress") if job else None
    if not isinstance(progress, Mapping) or progress.get("estimate_available") is not True:
        return None
    seconds = number(progress.get("seconds_remaining"))
    return None if seconds is None or seconds < 0 else Eta(now + seconds, "service")


def epochs(job: Mapping[str, Any] | None) -> int | None:
    """`n_epochs` when it is a positive integer."""
    value = job.get("n_epochs") if job else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def training_length(state: AlertState, job: Mapping[str, Any] | None) -> tuple[float, str] | None:
    """Expected seconds of training and the source, from what the job logged so far."""
    n = epochs(job)
    if n is not None and state.first_epoch is not None:
        return state.first_epoch * n, "first_epoch"
    if state.run_start is None:
        return None
    if n is not None and state.epoch is not None and state.epoch[0] > 0:
        elapsed = state.epoch[1] - state.run_start
        if elapsed > 0:
            return elapsed / state.epoch[0] * n, "step_rate"
    total = job.get("total_steps") if job else None
    per_step = state.median_step()
    if isinstance(total, int) and not isinstance(total, bool) and total > 0 and per_step:
        return total * per_step, "step_rate"
    return None


#: The step-rate estimate is frozen as the expected length once this much of an epoch is done.
MIN_EPOCH_FRACTION: Final = 0.1


def expected(state: AlertState, job: Mapping[str, Any] | None) -> float | None:
    """The training length the `overrun` rule holds the job to.

    First epoch x `n_epochs` once the first epoch is over; before that, the step-rate
    estimate made when a tenth of an epoch was done, kept as it was (an estimate that
    followed the job's own slowdown could never be overrun).
    """
    length = training_length(state, job)
    if length is None:
        return state.expected
    if length[1] == "first_epoch":
        return length[0]
    if state.expected is None and state.epoch is not None:
        return length[0] if state.epoch[0] >= MIN_EPOCH_FRACTION else None
    return state.expected


def estimate(
    state: AlertState, job: Mapping[str, Any] | None, status: str, now: float
) -> Eta | None:
    """The best ETA for a job in `status` at `now` (None when nothing supports one)."""
    found = service_eta(job, now)
    if found is not None or status != "running" or state.run_start is None:
        return found
    length = training_length(state, job)
    return None if length is None else Eta(state.run_start + length[0], length[1])
