"""One evaluation: a page's new rows into the rule memory, the rules, episodes open and close.

`evaluate` is pure: the poller calls it with what it already fetched and writes the
result (new state, alert changes, ETA, a cancel decision) in the same transaction as
the page, so a restart, kill or re-poll never repeats or loses an alert. Only rows
past the last evaluated step of their kind count, so a page fetched twice changes
nothing. A job that ends resolves every open episode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from msgspec.structs import replace

from watcherd.alerts import rules  # the module
from watcherd.alerts.eta import Eta, estimate, expected
from watcherd.alerts.fold import NS, RowColumns, fold, watched_keys
from watcherd.alerts.rules import Finding
from watcherd.alerts.state import AlertState
from watcherd.config.alerting import RULES, AlertsConfig
from watcherd.model import (
    MISSING,
    NON_CANCELLABLE_STATUSES,
    MetricRow,
    is_terminal,
    job_epoch,
)


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
    rows: Sequence[MetricRow] | RowColumns = ()  # decoded rows, or their columns
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
    rows = obs.rows
    if not isinstance(rows, RowColumns):
        rows = RowColumns.of_rows(rows, watched_keys(config))
    folded = fold(config, state, rows)
    updates = folded.updates
    if folded.grew:
        updates["progress_at"] = _logged_at(state, folded.last_stamp, obs.now)
    if obs.fetched:
        updates["metrics_at"] = obs.now
    updates |= _timing(state, obs)
    new = replace(state, **updates)
    if new.run_start is not None and new.first_epoch is None and folded.epoch_one is not None:
        new = replace(new, first_epoch=max(0.0, folded.epoch_one - new.run_start))
    if obs.status == "running" and new.run_start is not None:
        new = replace(new, expected=expected(new, obs.job))
    return new


def _logged_at(state: AlertState, last_ns: int | None, now: float) -> float:
    """When the newest step was logged, on our clock: its timestamp, kept between the
    previous fetch (it was not there yet) and now, so a service clock that is off (or a
    simulator that runs fast) cannot make a job look stalled."""
    logged = last_ns / NS if last_ns is not None else now
    floor = state.metrics_at if state.metrics_at is not None else now
    return max(min(logged, now), min(floor, now))


def _timing(state: AlertState, obs: Observation) -> dict[str, Any]:
    """`queued_since` while queued; `run_start` once running (from `started_at`)."""
    out: dict[str, Any] = {}
    if obs.status in rules.QUEUED and state.queued_since is None:
        out["queued_since"] = obs.now
    if obs.status == "running" and state.run_start is None:  # read once, not every poll
        start = job_epoch(obs.job, "started_at")
        if start is not None:
            out["run_start"] = start
    return out
