"""One evaluation: a page's new rows into the rule memory, the rules, episodes open and close.

`evaluate` is pure: the poller calls it with what it already fetched and writes the
result (new state, alert changes, ETA, a cancel decision) in the same transaction as
the page, so a restart, kill or re-poll never repeats or loses an alert. Only rows
past the last evaluated step of their kind count, so a page fetched twice changes
nothing. A job that ends resolves every open episode.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from msgspec.structs import replace

from watcherd.alerts import rules  # the module
from watcherd.alerts.eta import Eta, estimate, expected
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
    job_epoch,
    row_kind,
    row_step,
)
from watcherd.stamps import stamp_ns

_NS: Final = 1e9
#: Keys whose explicit `null` counts as NaN (the key is there, its value not a number).
LOSS_KEYS: Final = frozenset({"train/loss", "eval/loss"})


@dataclass(frozen=True, slots=True)
class Observation:
    """One poll of a job: the clock, its status and object, the rows fetched (if any).

    `job` needs only the fields the rules read (`created_at`, `started_at`,
    `queue_depth`, `progress`, `n_epochs`, `total_steps`): the poller passes those
    (`api.shapes.JOB_FACTS`), not the whole object.
    """

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
    if opened or closed:
        open_now = {r: n for r, n in state.open.items() if r not in closed} | opened
        state = replace(state, open=open_now, episodes=dict(state.episodes) | opened)
    cancel = _cancel(config, state, findings, opened, obs.status) if allow_cancel else None
    if cancel is not None:
        state = replace(state, cancel=cancel.rule)
    return Evaluation(state, tuple(changes), estimate(state, obs.job, obs.status, obs.now), cancel)


def _ended(status: str) -> bool:
    return is_terminal(status) or status == MISSING


def _findings(config: AlertsConfig, state: AlertState, obs: Observation) -> dict[str, Finding]:
    """Each enabled rule's finding, for the rules whose condition holds now."""
    status = obs.status
    found: dict[str, Finding | None] = {}
    if config.nonfinite.enabled:
        found["nonfinite"] = rules.nonfinite(config.nonfinite, state)
    if config.diverging.enabled:
        is_open = "diverging" in state.open
        found["diverging"] = rules.diverging(config.diverging, state, is_open=is_open)
    if config.stalled.enabled:
        found["stalled"] = rules.stalled(config.stalled, state, status)
    if config.queued_long.enabled:
        found["queued_long"] = rules.queued_long(
            config.queued_long, state, obs.job, status, obs.now
        )
    if config.overrun.enabled:
        found["overrun"] = rules.overrun(config.overrun, state, status)
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
    new = replace(state, **updates)
    if new.run_start is not None and new.first_epoch is None and tracker.epoch_one is not None:
        new = replace(new, first_epoch=max(0.0, tracker.epoch_one - new.run_start))
    if obs.status == "running" and new.run_start is not None:
        new = replace(new, expected=expected(new, obs.job))
    return new


def _logged_at(state: AlertState, tracker: _Tracker, now: float) -> float:
    """When the newest step was logged, on our clock: its timestamp, kept between the
    previous fetch (it was not there yet) and now, so a service clock that is off (or a
    simulator that runs fast) cannot make a job look stalled."""
    logged = tracker.train[-1][1] / _NS if tracker.train else now
    floor = state.metrics_at if state.metrics_at is not None else now
    return max(min(logged, now), min(floor, now))


def _timing(state: AlertState, obs: Observation) -> dict[str, Any]:
    """`queued_since` while queued; `run_start` once running (from `started_at`)."""
    out: dict[str, Any] = {}
    if obs.status in rules.QUEUED and state.queued_since is None:
        out["queued_since"] = obs.now
    start = job_epoch(obs.job, "started_at") if obs.status == "running" else None
    if start is not None and state.run_start is None:
        out["run_start"] = start
    return out


class _Tracker:
    """Folds new rows into copies of the state's mappings (one pass over the page).

    Kept cheap per row (pages can hold 200,000 rows): the values of each watched key,
    and train rows' (step, timestamp, epoch), are gathered in the pass; windows, best
    values and timing are worked out from them afterwards.
    """

    def __init__(self, config: AlertsConfig, state: AlertState) -> None:
        self.keys = tuple(dict.fromkeys((*config.nonfinite.keys, *config.diverging.keys)))
        self.window = config.diverging.window
        self.state = state
        self.seen = dict(state.seen)
        self.values: dict[str, list[tuple[int, Any]]] = {key: [] for key in self.keys}
        self.train: list[tuple[int, int, Any]] = []  # (step, timestamp ns, train/epoch)
        self.max_step = state.max_step
        self.grew = False
        self.epoch_one: float | None = None  # service time the first epoch ended, if here

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
            value = row.get(key)
            if value is None and key in LOSS_KEYS and key in row:
                value = math.nan  # an explicit null loss: JSON.stringify's NaN
            if value is not None:
                self.values[key].append((step, value))
        stamp = row.get(TIMESTAMP_KEY)
        if kind == "train" and type(stamp) is int:  # in nanoseconds whatever its unit
            self.train.append((step, stamp_ns(stamp), row.get(EPOCH_KEY)))

    def updates(self) -> dict[str, Any]:
        """The changed fields of the state."""
        latest, best = dict(self.state.latest), dict(self.state.best)
        recent, rises = dict(self.state.recent), dict(self.state.rises)
        bad_since = dict(self.state.bad_since)
        for key, found in self.values.items():
            if found:
                self._fold(key, found, latest, best, recent, rises)
                _fold_bad_run(key, latest.get(key), found, bad_since)
        out: dict[str, Any] = {
            "seen": self.seen,
            "latest": latest,
            "bad_since": bad_since,
            "best": best,
            "recent": recent,
            "rises": rises,
            "max_step": self.max_step,
        }
        return out | self._timing()

    def _fold(
        self,
        key: str,
        found: list[tuple[int, Any]],
        latest: dict[str, tuple[int, float]],
        best: dict[str, float],
        recent: dict[str, tuple[float, ...]],
        rises: dict[str, int],
    ) -> None:
        """One key's new values into its latest value, window, best and rise count."""
        window = list(recent.get(key, ()))
        low, count = best.get(key), rises.get(key, 0)
        evaluating = rules.is_eval(key)
        for step, raw in found:
            value = number_or_nan(raw)
            if value is None:
                continue
            latest[key] = (step, value)
            if not math.isfinite(value):
                continue
            if evaluating and window:
                count = count + 1 if value > window[-1] else 0
            window.append(value)
            if len(window) > self.window:
                del window[0]
            smoothed = value if evaluating else _median(window)
            low = smoothed if low is None or smoothed < low else low
        recent[key] = tuple(window)
        rises[key] = count
        if low is not None:
            best[key] = low

    def _timing(self) -> dict[str, Any]:
        """Seconds per step (from the newest train rows), the run start, epoch 1's end."""
        if not self.train:
            return {}
        out: dict[str, Any] = {}
        previous = self.state.last_train
        tail = self.train[-(STEP_SAMPLES + 1) :]
        if previous is not None and len(tail) == len(self.train):
            tail = [(previous[0], previous[1], None), *tail]
        samples = list(self.state.step_secs)
        for (s0, t0, _), (s1, t1, _) in itertools.pairwise(tail):
            if s1 > s0 and t1 > t0:
                samples.append((t1 - t0) / _NS / (s1 - s0))
        step, stamp, _ = self.train[-1]
        out |= {"step_secs": tuple(samples[-STEP_SAMPLES:]), "last_train": (step, stamp)}
        epochs = [(e, t / _NS) for _, t, e in self.train if type(e) in (int, float)]
        epochs = [(float(e), t) for e, t in epochs if math.isfinite(e)]
        if epochs:
            out["epoch"] = epochs[-1]
            if self.state.first_epoch is None:
                self.epoch_one = next((t for e, t in epochs if e >= 1), None)
        if self.state.run_start is None:
            out["run_start"] = self.train[0][1] / _NS  # replaced by `started_at` if given
        return out


def _median(window: list[float]) -> float:
    """The median of a short window."""
    ordered = sorted(window)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def number_or_nan(value: Any) -> float | None:
    """A JSON number as a float, NaN and ±Infinity included; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def _fold_bad_run(
    key: str, latest: tuple[int, float] | None, found: list[tuple[int, Any]], since: dict[str, int]
) -> None:
    """Where the key's current run of non-finite values began (gone once a finite one comes)."""
    if latest is None or math.isfinite(latest[1]):
        since.pop(key, None)
        return
    run_start = latest[0]
    for step, raw in reversed(found):
        value = number_or_nan(raw)
        if value is None:
            continue
        if math.isfinite(value):
            break
        run_start = step
    else:
        run_start = since.get(key, run_start)  # the run began before this page
    since[key] = run_start
