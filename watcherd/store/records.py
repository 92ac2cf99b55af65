"""The store's write-side vocabulary: what the poller hands in and gets back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from watcherd.model import MetricRecord, MetricRow

if TYPE_CHECKING:  # the rules load only where they run (the poller)
    from watcherd.alerts.episodes import Evaluation


class HookLike(Protocol):
    """Anything with a hook name and the statuses it fires on (HookSub, HookConfig)."""

    @property
    def name(self) -> str: ...

    @property
    def on(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class HookSub:
    """A hook's subscription: its name and the statuses it fires on."""

    name: str
    on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobState:
    """What the poller needs to schedule one watched job."""

    job_id: str
    status: str | None
    max_step: int | None
    not_found_count: int
    last_poll_at: float | None
    seconds_remaining: float | None
    last_error: str | None = None
    status_since: float | None = None
    #: `global_step_from` for the next fetch: the lowest step among rows logged within
    #: `model.SETTLE_NS` of the newest (None: no rows yet, fetch from the start).
    cursor_step: int | None = None
    #: Finished, but its last metrics fetch failed: the rows are still to come.
    metrics_pending: bool = False
    alert_state: str | None = None  # the rules' memory (alerts.AlertState as JSON)
    cancel_state: str | None = None  # intent | requested | skipped, if a cancel was decided


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One fetched page of truth about a job, written in a single transaction.

    `job` is the raw job object as received (None for a status-only sighting, e.g. from
    the list endpoint). `seconds_remaining` defaults to `job["progress"]["seconds_remaining"]`
    when the job says an estimate is available; otherwise there is no estimate.
    Rows come as `metrics` (decoded rows, stored as `dumps_exact` text) or as `records`
    (the API client's, each with its exact text), or both (`metrics` first).
    `events` is the job's whole event log as just fetched (None: not fetched this
    time); `total_price` (nano-dollars) and `token_count` as the job object said.
    `metrics_error` says the metrics fetch failed (so there are no rows): the status is
    recorded all the same, and a finished job is marked as still owing its metrics.
    """

    job_id: str
    observed_at: float
    job: dict[str, Any] | None
    status: str | None
    metrics: Sequence[MetricRow] = ()
    hooks: Sequence[HookLike] = ()
    seconds_remaining: float | None = None
    records: Sequence[MetricRecord] = ()
    events: Sequence[Mapping[str, Any]] | None = None
    total_price: int | None = None
    token_count: int | None = None
    metrics_error: str | None = None
    #: The alert rules' verdict on this page, written in its transaction (None: no rules).
    evaluation: Evaluation | None = None


@dataclass(frozen=True, slots=True)
class PollResult:
    """What a recorded poll changed: the transition, new metric rows, new deliveries.

    `new_events` counts the events stored for the first time; `restarts` names the
    jobs that new `job_restarted` events say continue this one.
    """

    transition: tuple[str | None, str] | None = None
    new_rows: int = 0
    deliveries: list[str] = field(default_factory=list)
    new_events: int = 0
    restarts: tuple[str, ...] = ()
