"""One evaluation: a page's new rows into the rule memory, the rules, episodes open and close.

`evaluate` is pure: the poller calls it with what it already fetched and writes the
result (new state, alert changes, ETA, a cancel decision) in the same transaction as
the page, so a restart, kill or re-poll never repeats or loses an alert. Only rows
past the last evaluated step of their kind count, so a page fetched twice changes
nothing. A job that ends resolves every open episode.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from watcherd.alerts import rules  # the module
from watcherd.alerts.eta import Eta, estimate, expected, started_at
from watcherd.alerts.rules import Finding
from watcherd.alerts.state import STEP_SAMPLES, AlertState
from watcherd.config.alerting import RULES, AlertsConfig
from watcherd.model import (
    EPOCH_KEY,
    MISSING,
    NON_CANCELLABLE_STATUSES,
    TIMESTAMP_KEY,
    MetricRow,
    is_terminal,
    row_kind,
    row_step,
)

_NS: Final = 1e9


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll of a job: the clock, its status and object, the rows fetched (if any)."""

    now: float  # watcherd's clock, epoch seconds
    status: str
    job: Mapping[str, Any] | None = None
    rows: Sequence[MetricRow] = ()
    fetched: bool = False  # the metrics endpoint was asked in this poll


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An episode that opened (`opened`) or resolved, with the details to store and send."""

    rule: str
    episode: int
    opened: bool
    at: float
    details: Mapping[str, Any]
    action: str = "alert"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one poll changed: the new state, episode changes, the ETA, a cancel to make."""

    state: AlertState
    changes: tuple[AlertChange, ...] = ()
    eta: Eta | None = None
    cancel: Finding | None = None


def evaluate(
    config: AlertsConfig, state: AlertState, obs: Observation, *, allow_cancel: bool = False
) -> Evaluation:
    """Absorb the observation, run every enabled rule, open and resolve episodes."""
    state = absorb(config, state, obs)
    findings = {} if _ended(obs.status) else _findings(config, state, obs)
    changes, opened, closed = _episodes(config, state, findings, obs.now)
    open_now = {r: n for r, n in state.open.items() if r not in closed} | opened
    episodes = dict(state.episodes) | opened
    state = dataclasses.replace(state, open=open_now, episodes=episodes)
    cancel = _cancel(config, state, findings, opened, obs.status) if allow_cancel else None
    if cancel is not None:
        state = dataclasses.replace(state, cancel=cancel.rule)
    return Evaluation(state, tuple(changes), estimate(state, obs.job, obs.status, obs.now), cancel)


def _ended(status: str) -> bool:
    return is_terminal(status) or status == MISSING


def _findings(config: AlertsConfig, state: AlertState, obs: Observation) -> dict[str, Finding]:
    """Each enabled rule's finding, for the rules whose condition holds now."""
    job, status, now = obs.job, obs.status, obs.now
    checks = {
        "nonfinite": lambda: rules.nonfinite(config.nonfinite, state),
        "diverging": lambda: rules.diverging(
            config.diverging, state, is_open="diverging" in state.open
        ),
        "stalled": lambda: rules.stalled(config.stalled, state, status),
        "queued_long": lambda: rules.queued_long(config.queued_long, state, job, status, now),
        "overrun": lambda: rules.overrun(config.overrun, state, status),
    }
    found = {name: checks[name]() for name in RULES if config.rule(name).enabled}
    return {name: f for name, f in found.items() if f is not None}


def _episodes(
    config: AlertsConfig, state: AlertState, findings: Mapping[str, Finding], now: float
) -> tuple[list[AlertChange], dict[str, int], set[str]]:
    """Changes for rules that started or stopped holding; (changes, opened, closed)."""
    changes: list[AlertChange] = []
    opened: dict[str, int] = {}
    closed: set[str] = set()
    for rule in RULES:
        episode = state.open.get(rule)
        found = findings.get(rule)
        if found is not None and episode is None:
            opened[rule] = state.episodes.get(rule, 0) + 1
            action = config.rule(rule).action
            changes.append(AlertChange(rule, opened[rule], True, now, found.details(), action))
        elif found is None and episode is not None:
            closed.add(rule)
            details = {"message": f"{rule} cleared"}
            changes.append(AlertChange(rule, episode, False, now, details))
    return changes, opened, closed


def _cancel(
    config: AlertsConfig,
    state: AlertState,
    findings: Mapping[str, Finding],
    opened: Mapping[str, int],
    status: str,
) -> Finding | None:
    """The finding to cancel on: a newly opened cancel rule, once per job, if cancellable."""
    if state.cancel is not None or status in NON_CANCELLABLE_STATUSES or _ended(status):
        return None
    for rule in config.armed():
        if rule in opened:
            return findings[rule]
    return None


# -- absorbing a page ------------------------------------------------------------


def absorb(config: AlertsConfig, state: AlertState, obs: Observation) -> AlertState:
    """The state after the observation: new rows, the fetch time, the queue and run start."""
    tracker = _Tracker(config, state)
    for row in obs.rows:
        tracker.row(row)
    updates = tracker.updates()
    if tracker.grew:
        updates["progress_at"] = _logged_at(state, tracker, obs.now)
    if obs.fetched:
        updates["metrics_at"] = obs.now
    updates |= _timing(state, obs)
    new = dataclasses.replace(state, **updates)
    if new.run_start is not None and new.first_epoch is None and tracker.epoch_one is not None:
        new = dataclasses.replace(new, first_epoch=max(0.0, tracker.epoch_one - new.run_start))
    if obs.status == "running" and new.run_start is not None:
        new = dataclasses.replace(new, expected=expected(new, obs.job))
    return new


def _logged_at(state: AlertState, tracker: _Tracker, now: float) -> float:
    """When the newest step was logged, on our clock: its timestamp, kept between the
    previous fetch (it was not there yet) and now, so a service clock that is off (or a
    simulator that runs fast) cannot make a job look stalled."""
    logged = tracker.last_train[1] / _NS if tracker.last_train else now
    floor = state.metrics_at if state.metrics_at is not None else now
    return max(min(logged, now), min(floor, now))


def _timing(state: AlertState, obs: Observation) -> dict[str, Any]:
    """`queued_since` while queued; `run_start` once running (from `started_at`)."""
    out: dict[str, Any] = {}
    if obs.status in rules.QUEUED and state.queued_since is None:
        out["queued_since"] = obs.now
    start = started_at(obs.job) if obs.status == "running" else None
    if start is not None and state.run_start is None:
        out["run_start"] = start
    return out


class _Tracker:
    """Folds new rows into copies of the state's mappings (one pass over the page)."""

    def __init__(self, config: AlertsConfig, state: AlertState) -> None:
        self.keys = tuple(dict.fromkeys((*config.nonfinite.keys, *config.diverging.keys)))
        self.window = config.diverging.window
        self.state = state
        self.seen = dict(state.seen)
        self.latest = dict(state.latest)
        self.best = dict(state.best)
        self.recent = {k: list(v) for k, v in state.recent.items()}
        self.rises = dict(state.rises)
        self.samples = list(state.step_secs)
        self.last_train = state.last_train
        self.max_step = state.max_step
        self.epoch = state.epoch
        self.first_row: float | None = None
        self.epoch_one: float | None = None
        self.grew = False

    def row(self, row: MetricRow) -> None:
        """One row, skipped when its step was evaluated already."""
        try:
            kind, step = row_kind(row), row_step(row)
        except (KeyError, ValueError):
            return
        if step <= self.seen.get(kind, -1):
            return
        self.seen[kind] = step
        if self.max_step is None or step > self.max_step:
            self.max_step, self.grew = step, True
        for key in self.keys:
            value = number_or_nan(row.get(key))
            if value is not None:
                self._value(key, step, value)
        stamp = row.get(TIMESTAMP_KEY)
        if kind == "train" and isinstance(stamp, int) and not isinstance(stamp, bool):
            self._timing(step, stamp, row)

    def _value(self, key: str, step: int, value: float) -> None:
        self.latest[key] = (step, value)
        if not math.isfinite(value):
            return
        window = self.recent.setdefault(key, [])
        if rules.is_eval(key) and window:
            self.rises[key] = self.rises.get(key, 0) + 1 if value > window[-1] else 0
        window.append(value)
        del window[: max(0, len(window) - self.window)]
        smoothed = rules.current(AlertState(recent={key: tuple(window)}), key)
        if smoothed is not None:
            self.best[key] = min(self.best.get(key, smoothed), smoothed)

    def _timing(self, step: int, stamp: int, row: MetricRow) -> None:
        """Seconds per step, the first row's time and when epoch 1 ended."""
        if self.last_train is not None and step > self.last_train[0] and stamp > self.last_train[1]:
            per = (stamp - self.last_train[1]) / _NS / (step - self.last_train[0])
            self.samples = [*self.samples, per][-STEP_SAMPLES:]
        self.last_train = (step, stamp)
        seconds = stamp / _NS
        if self.first_row is None:
            self.first_row = seconds
        epoch = number_or_nan(row.get(EPOCH_KEY))
        if epoch is not None and math.isfinite(epoch):
            self.epoch = (epoch, seconds)
            if epoch >= 1 and self.epoch_one is None and self.state.first_epoch is None:
                self.epoch_one = seconds

    def updates(self) -> dict[str, Any]:
        """The changed fields of the state."""
        out: dict[str, Any] = {
            "seen": self.seen,
            "latest": self.latest,
            "best": self.best,
            "recent": {k: tuple(v) for k, v in self.recent.items()},
            "rises": self.rises,
            "step_secs": tuple(self.samples),
            "last_train": self.last_train,
            "max_step": self.max_step,
            "epoch": self.epoch,
        }
        if self.state.run_start is None and self.first_row is not None:
            out["run_start"] = self.first_row  # replaced by `started_at` when the job has it
        return out


def number_or_nan(value: Any) -> float | None:
    """A JSON number as a float, NaN and ±Infinity included; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)
