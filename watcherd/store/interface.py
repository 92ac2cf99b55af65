"""StoreApi: what the daemon, the poller and the CLI may ask of a store, either backend;
StoreReader: its part the read commands use.

`watcherd.store.Store` (SQLite) and `watcherd.store.postgres.core.PgStore` both satisfy
it; `watcherd.store.opening.open_store` hands out one or the other by target.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from watcherd.model import (
    Alert,
    CancelRecord,
    Delivery,
    JobOverview,
    MetricFilter,
    MetricRecord,
    MetricRow,
    MetricsSummary,
    PayloadFacts,
    Transition,
)
from watcherd.spend import Period, SpendRow
from watcherd.store.records import HookLike, JobState, PollRecord, PollResult


class StoreReader(Protocol):
    """What the read commands (`list`, `show`, `metrics`, `hooks`, `alerts`, `events`,
    `cost`, `report`, `health`) ask of a store: either backend's store, or SQLite's
    `Snapshot` (the same queries driven without an event loop, see
    `watcherd.store.snapshot`)."""

    async def job_states(self, only: Iterable[str] | None = None) -> dict[str, JobState]:
        """Scheduling state of the watched jobs, or of the stored jobs among `only`."""
        ...

    async def get_state(self, key: str) -> str | None:
        """One daemon-state value, or None."""
        ...

    async def last_successful_poll(self) -> float | None:
        """When a poll was last recorded successfully."""
        ...

    async def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        """Every delivery, or one job's, in creation order."""
        ...

    async def overview(self, *, include_unwatched: bool = False) -> list[JobOverview]:
        """One row per job for `watcherd list`."""
        ...

    async def job(self, job_id: str) -> tuple[JobOverview, dict[str, Any] | None] | None:
        """One job's overview and last job object, or None if never seen."""
        ...

    async def transitions(self, job_id: str) -> list[Transition]:
        """A job's status changes, oldest first."""
        ...

    async def metrics_json(self, job_id: str, flt: MetricFilter = ...) -> list[str]:
        """Stored JSON texts under `list_metrics` semantics, in API order."""
        ...

    async def metrics(self, job_id: str, flt: MetricFilter = ...) -> list[MetricRow]:
        """Rows under `list_metrics` semantics, parsed exactly, in API order."""
        ...

    async def alerts(self, job_id: str | None = None, *, open_only: bool = False) -> list[Alert]:
        """Alert episodes, oldest first (one job's, or every job's); only open ones if asked."""
        ...

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored API events, in the order first seen."""
        ...

    async def spend(self) -> list[SpendRow]:
        """Every priced job's spend (see `watcherd.spend`), in the order added."""
        ...


class StoreApi(StoreReader, Protocol):
    """The store's public methods; every write is one transaction, shielded."""

    @property
    def writer(self) -> bool: ...

    @property
    def busy_for(self) -> float | None:
        """Seconds the current database call has run; None when none runs."""
        ...

    @property
    def lock_wait_since(self) -> float | None:
        """Since when (epoch seconds) this store waits for another process's write lock."""
        ...

    def check_files(self) -> None:
        """StoreUnusableError if the database files were deleted or replaced (SQLite)."""

    async def cut_long_calls(self, grace: float) -> None:
        """The daemon is stopping: cut short any call running longer than `grace`."""

    async def sync_watched(
        self, entries: Sequence[tuple[str, str | None]], now: float, *, source: str | None = None
    ) -> None:
        """Watch exactly these (job_id, note) pairs; other jobs become unwatched, kept.

        With `source` on a shared database, the entries are one host's jobs, which add to
        the shared list: only what changed in that source since its last sync is applied.
        """

    async def change_watched(
        self, add: Sequence[tuple[str, str | None]], remove: Sequence[str], now: float
    ) -> None:
        """Watch `add` and unwatch `remove`; other jobs stay as they are."""

    async def ensure_jobs(self, job_ids: Sequence[str], now: float | None = None) -> None:
        """Create unwatched rows for jobs never seen."""

    async def record_poll(self, rec: PollRecord) -> PollResult:
        """Rows, job fields, transition and outbox rows of one page, in one transaction."""
        ...

    async def record_failure(
        self, job_id: str, observed_at: float, error: str, *, not_found: bool
    ) -> int:
        """Note a failed poll; returns the count of 404s in a row."""
        ...

    async def mark_missing(
        self, job_id: str, observed_at: float, hooks: Sequence[HookLike]
    ) -> PollResult:
        """Transition the job to `missing` and queue the hooks that subscribe to it."""
        ...

    async def record_events(self, job_id: str, events: Sequence[dict[str, Any]], now: float) -> int:
        """Store API events not seen before; return how many."""
        ...

    async def set_state(self, key: str, value: str | None) -> None:
        """Set (or with None, delete) one daemon-state value."""

    async def set_host_pause(self, host: str, until: float | None) -> None:
        """Pause every request to `host` until `until` (epoch seconds); None lifts it."""

    async def host_pauses(self) -> dict[str, float]:
        """Every stored host pause."""
        ...

    async def clear_host_pauses(self) -> dict[str, float]:
        """Lift every stored host pause; returns the ones lifted."""
        ...

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending or failed deliveries due at `now`, oldest first."""
        ...

    async def start_attempt(self, delivery_id: str, now: float) -> int:
        """Mark running, count the attempt; returns the attempt number."""
        ...

    async def finish_attempt(
        self,
        delivery_id: str,
        now: float,
        *,
        outcome: str,
        error: str | None,
        output_tail: str | None,
        next_attempt_at: float | None,
    ) -> None:
        """Record an attempt's outcome: delivered, failed (retry at next_attempt_at), dead."""

    async def recover_interrupted(self, now: float) -> list[str]:
        """Deliveries a crash left running become failed, due now; returns their ids."""
        ...

    async def requeue(self, delivery_id: str, now: float) -> bool:
        """Same id back to pending, due now, attempts reset; False if unknown or running."""
        ...

    async def next_delivery_due(self) -> float | None:
        """When the next pending or failed delivery falls due."""
        ...

    async def delivery_context(
        self, delivery_id: str
    ) -> tuple[Delivery, dict[str, Any] | None, MetricsSummary]:
        """A delivery, its job's last job object and metrics summary."""
        ...

    async def payload_facts(self, job_id: str) -> PayloadFacts:
        """Reason, price, tokens, transitions, events and a loss sample of a job."""
        ...

    async def fire_budget(
        self, limits: Sequence[tuple[Period, int]], hooks: Sequence[HookLike], now: float
    ) -> list[str]:
        """Queue `budget.exceeded` for the periods over their limit, once per period; the
        delivery ids new now."""
        ...

    async def delivery_counts(self) -> dict[str, int]:
        """Deliveries per state."""
        ...

    async def open_alert_counts(self) -> dict[str, int]:
        """Open alert episodes of watched jobs, by rule."""
        ...

    async def cancels(self, job_id: str | None = None) -> dict[str, CancelRecord]:
        """Cancel records by job (one job's, or all)."""
        ...

    async def start_cancel(self, job_id: str, now: float) -> int:
        """Count a cancel call about to be made, in its own transaction; the attempt number."""
        ...

    async def finish_cancel(
        self,
        job_id: str,
        now: float,
        state: str,
        error: str | None = None,
        poll: PollRecord | None = None,
    ) -> PollResult | None:
        """A cancel's outcome, with the job as the service answered (`poll`), in one transaction."""
        ...

    async def user_cancel(self, job_id: str, now: float, reason: str) -> None:
        """Record that a person cancelled the job (`watcherd cancel`)."""

    async def delivery_extras(self, delivery: Delivery) -> dict[str, Any]:
        """The payload's `alert`, `eta` and `cancel` parts for one delivery."""
        ...

    async def all_metrics(self, job_id: str) -> list[MetricRow]:
        """Every stored row of a job, in API order."""
        ...

    async def metrics_summary(self, job_id: str) -> MetricsSummary:
        """Last step, last and best train/eval loss."""
        ...

    async def claim_work(self) -> frozenset[str] | None:
        """Claim this daemon's share of the watched jobs on a shared database (renewing
        what it holds); the job ids it polls, or None when every job is its own."""
        ...

    @property
    def next_claim_in(self) -> float | None:
        """Seconds until `claim_work` is due again (None: no claims, or none made yet)."""
        ...

    async def try_lease(self, name: str, seconds: float) -> bool:
        """Take (or keep) a named lease for `seconds`; False if another daemon holds it."""
        ...

    async def live_daemons(self) -> list[tuple[str, str, int]]:
        """(instance, host, pid) of the daemons sharing a database ([] on SQLite)."""
        ...

    async def integrity_check(self) -> str:
        """ "ok" for a sound database."""
        ...


@runtime_checkable
class RowBatches(Protocol):
    """A store that takes a big page's rows batch by batch, each in its own transaction
    (SQLite's `Store`); PostgreSQL writes a page in one transaction and has no such call."""

    async def record_rows(
        self,
        job_id: str,
        records: Sequence[MetricRecord],
        now: float,
        alert_state: str,
    ) -> int:
        """One batch of a page's rows and the job fields they move (and the alert rules'
        memory with the batch folded in); returns how many rows were new."""
        ...
