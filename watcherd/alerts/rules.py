"""The five rules: pure functions of a job's rule memory, its status and the clock.

Each returns a `Finding` while its condition holds, else None. None of them makes a
request: they read what the poller already fetched (through `AlertState`) and the job
object it already has. `is_open` lets a rule keep an episode open until its condition
has truly cleared (hysteresis), so a value hovering at a threshold does not flap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from watcherd.alerts.eta import number
from watcherd.alerts.state import AlertState
from watcherd.config.alerting import (
    DivergingRule,
    NonfiniteRule,
    OverrunRule,
    QueuedLongRule,
    StalledRule,
)
from watcherd.model import job_epoch

QUEUED: Final = frozenset({"pending", "queued"})


@dataclass(frozen=True, slots=True)
class Finding:
    """Why a rule holds: the values that tripped it, for the alert and its payload."""

    rule: str
    message: str
    step: int | None = None
    key: str | None = None
    value: float | None = None
    best: float | None = None
    threshold: float | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def details(self) -> dict[str, Any]:
        """The finding as a JSON-ready mapping."""
        out: dict[str, Any] = {"message": self.message, "step": self.step, "key": self.key}
        out |= {"value": self.value, "best": self.best, "threshold": self.threshold}
        return out | dict(self.extra)


def is_eval(key: str) -> bool:
    """Eval keys are judged value by value; train keys by a running median."""
    return key.startswith("eval/")


def current(state: AlertState, key: str) -> float | None:
    """A key's value as the diverging rule sees it: median of the window, or last eval."""
    window = state.recent.get(key)
    if not window:
        return None
    if is_eval(key):
        return window[-1]
    ordered = sorted(window)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def nonfinite(rule: NonfiniteRule, state: AlertState) -> Finding | None:
    """A watched key's newest value is NaN or ±Infinity; `step` is where that run began."""
    for key in rule.keys:
        found = state.latest.get(key)
        if found is not None and not math.isfinite(found[1]):
            newest, value = found
            step = state.bad_since.get(key, newest)
            message = f"{key} is {_spell(value)} at step {step}"
            if newest > step:
                message += f" (and still at step {newest})"
            return Finding("nonfinite", message, step=step, key=key, value=value)
    return None


def diverging(rule: DivergingRule, state: AlertState, *, is_open: bool) -> Finding | None:
    """A loss above factor x its best after warm-up, or an eval loss rising too long."""
    step = state.max_step or 0
    for key in rule.keys:
        value, best = current(state, key), state.best.get(key)
        if value is None or best is None:
            continue
        limit = rule.factor * best
        if step > rule.warmup and best > 0 and value > limit:
            message = f"{key} {value:.4g} is above {rule.factor:g} x its best {best:.4g}"
            return Finding(
                "diverging", message, step=step, key=key, value=value, best=best, threshold=limit
            )
        if is_eval(key):
            found = _eval_rising(rule, state, key, value, best, is_open=is_open)
            if found is not None:
                return found
    return None


def _eval_rising(
    rule: DivergingRule, state: AlertState, key: str, value: float, best: float, *, is_open: bool
) -> Finding | None:
    """Eval loss up `patience` times in a row and `min_rise` above its best (held while so)."""
    limit = best * (1 + rule.min_rise) if best > 0 else best + rule.min_rise
    rising = state.rises.get(key, 0) >= rule.patience or is_open
    if not rising or value <= limit:
        return None
    step = state.latest.get(key, (state.max_step or 0, value))[0]
    message = (
        f"{key} {value:.4g} rose {state.rises.get(key, 0)} evals in a row,"
        f" {value / best - 1:.0%} above its best {best:.4g}"
        if best > 0
        else f"{key} {value:.4g} keeps rising above its best {best:.4g}"
    )
    return Finding(
        "diverging", message, step=step, key=key, value=value, best=best, threshold=limit
    )


def stall_limit(rule: StalledRule, state: AlertState) -> float | None:
    """Seconds without a new step that make a job stalled (None: no step rate yet)."""
    if rule.stall_after is not None:
        return rule.stall_after
    per_step = state.median_step()
    return None if per_step is None else max(rule.floor, rule.factor * per_step)


def stalled(rule: StalledRule, state: AlertState, status: str) -> Finding | None:
    """Running, and the last metrics fetch found no step newer than `limit` ago."""
    limit = stall_limit(rule, state)
    if status != "running" or limit is None:
        return None
    if state.progress_at is None or state.metrics_at is None:
        return None
    quiet = state.metrics_at - state.progress_at
    if quiet < limit:
        return None
    message = (
        f"no new step after step {state.max_step} for {_minutes(quiet)} (limit {_minutes(limit)})"
    )
    return Finding("stalled", message, step=state.max_step, value=quiet, threshold=limit)


def stall_check_due(rule: StalledRule, state: AlertState, status: str, now: float) -> bool:
    """True when a job looks stalled but its metrics were not fetched since it would be.

    The poller then fetches its metrics at once, so that a job the metrics cadence has
    not looked at recently is looked at before it is called stalled.
    """
    limit = stall_limit(rule, state)
    if not rule.enabled or status != "running" or limit is None or state.progress_at is None:
        return False
    suspect_at = state.progress_at + limit
    return now >= suspect_at and (state.metrics_at is None or state.metrics_at < suspect_at)


def queued_long(
    rule: QueuedLongRule, state: AlertState, job: Mapping[str, Any] | None, status: str, now: float
) -> Finding | None:
    """Pending or queued longer than `queue_after` since the job was created."""
    if status not in QUEUED:
        return None
    since = job_epoch(job, "created_at") or state.queued_since
    if since is None or now - since < rule.queue_after:
        return None
    depth = number(job.get("queue_depth")) if job else None
    where = f", queue depth {depth:g}" if depth is not None else ""
    message = f"{status} for {_minutes(now - since)} (limit {_minutes(rule.queue_after)}){where}"
    extra = (("queue_depth", depth),) if depth is not None else ()
    return Finding(
        "queued_long", message, value=now - since, threshold=rule.queue_after, extra=extra
    )


def overrun(rule: OverrunRule, state: AlertState, status: str) -> Finding | None:
    """Still training well past its expected length (`factor` x, and `grace` beyond).

    Measured on the service's clock (its newest row against its `started_at`), so a
    local clock that is off cannot trip it; a job that logs nothing more is `stalled`.
    """
    expected = state.expected
    if status != "running" or expected is None or state.run_start is None:
        return None
    if state.last_train is None:
        return None
    limit = max(rule.factor * expected, expected + rule.grace)
    elapsed = state.last_train[1] / 1e9 - state.run_start
    if elapsed <= limit:
        return None
    message = f"training for {_minutes(elapsed)}, expected about {_minutes(expected)}"
    return Finding(
        "overrun", message, step=state.max_step, value=elapsed, best=expected, threshold=limit
    )


def _spell(value: float) -> str:
    return "NaN" if math.isnan(value) else ("+Infinity" if value > 0 else "-Infinity")


def _minutes(seconds: float) -> str:
    """`42s`, `17m`, `2.5h`."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
