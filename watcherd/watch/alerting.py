"""The poller's alert part: evaluate each poll, look at suspected stalls, make cancels.

The rules live in `watcherd.alerts` and are pure; this module feeds them what the
poller already fetched and acts on a cancel decision. A cancel is called at most
once per job across kills: the intent is written in the transaction of the page
that revealed it, each call is counted in its own transaction before it is made, and
a pending intent is settled only after a fresh look at the job: if the service
already shows `cancel_requested` (a call made just before a crash landed), or the
job ended, or the intent was settled meanwhile (a person cancelled), no call is made.
On a shared PostgreSQL store each of these writes is fenced by the job's lease, so
only the daemon polling the job calls (see `watcherd.store.postgres.alertstore`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import structlog

from watcherd.alerts.episodes import Evaluation, Observation, absorb, evaluate
from watcherd.alerts.fold import RowColumns, watched_keys
from watcherd.alerts.rules import stall_check_due
from watcherd.alerts.state import AlertState
from watcherd.api.client import ApiClient
from watcherd.api.rulerows import rule_columns
from watcherd.config import Config
from watcherd.errors import ApiError, ClientRequestError
from watcherd.model import (
    NON_CANCELLABLE_STATUSES,
    MetricRecord,
    is_settled,
)
from watcherd.store import PollRecord, PollResult
from watcherd.store.interface import StoreApi
from watcherd.watch.schedule import JobSchedule

log = structlog.get_logger("watcherd.watch.alerting")

#: The one status in which a job can stall (`rules.stalled`).
TRAINING: Final = "running"

#: A cancel the service refuses (4xx) this often is given up (`skipped`).
MAX_CANCEL_ATTEMPTS: Final = 3


class AlertWatch:
    """Evaluates the rules for the poller and settles cancel intents."""

    def __init__(self, store: StoreApi, config: Config, wall: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.wall = wall

    def evaluate(
        self,
        sched: JobSchedule,
        status: str,
        job: Mapping[str, Any] | None,
        records: Sequence[MetricRecord],
    ) -> Evaluation:
        """The rules' verdict on one poll of `sched`'s job: its status, the fields of its
        object the rules read (`Job.facts`), the rows fetched (if any)."""
        fetched, sched.fetched = sched.fetched, False
        memory = AlertState.from_json(sched.alert_state)
        obs = Observation(self.wall(), status, job, self._new_rows(memory, records), fetched)
        return evaluate(self.config.alerts, memory, obs, allow_cancel=self.config.allow_cancel)

    def absorb(
        self, sched: JobSchedule, status: str, records: Sequence[MetricRecord]
    ) -> AlertState:
        """The rules' memory with one batch of a big page folded in (no verdict: that
        comes with the page's last batch), to be stored with the batch."""
        memory = AlertState.from_json(sched.alert_state)
        obs = Observation(self.wall(), status, None, self._new_rows(memory, records))
        return absorb(self.config.alerts, memory, obs)

    def _new_rows(self, memory: AlertState, records: Sequence[MetricRecord]) -> RowColumns:
        """The rows the rules have not seen yet, as columns: a page's others are skipped
        by the rules anyway (their step is at or below `seen[kind]`), so they stay text."""
        return rule_columns(records, watched_keys(self.config.alerts), memory.seen)

    def look_now(self, sched: JobSchedule, status: str) -> bool:
        """True when the job looks stalled and its metrics should be fetched before saying so."""
        if status != TRAINING or not self.config.alerts.stalled.enabled:
            return False  # what `stall_check_due` says first, without reading the memory
        memory = AlertState.from_json(sched.alert_state)
        return stall_check_due(self.config.alerts.stalled, memory, status, self.wall())

    async def settle_cancel(
        self, api: ApiClient, sched: JobSchedule, status: str
    ) -> PollResult | None:
        """Make the cancel `sched` has pending, unless the job can no longer be cancelled."""
        job_id, now = sched.job_id, self.wall()
        if status in NON_CANCELLABLE_STATUSES or is_settled(status):
            found = (await self.store.cancels(job_id)).get(job_id)
            made = found is not None and found.attempts > 0 and "cancel" in status
            await self.store.finish_cancel(
                job_id, now, "requested" if made else "skipped", f"the job was already {status}"
            )
            sched.cancel_pending = False
            log.info("job.cancel_settled", job_id=job_id, status=status, called=made)
            return None
        attempt = await self.store.start_cancel(job_id, now)
        if attempt == 0:  # settled meanwhile (a person's `watcherd cancel`): nothing to call
            sched.cancel_pending = False
            log.info("job.cancel_settled", job_id=job_id, status=status, called=False)
            return None
        rule = AlertState.from_json(sched.alert_state).cancel
        log.warning("job.cancel_calling", job_id=job_id, attempt=attempt, rule=rule)
        try:
            answer = await api.cancel(job_id)
        except ApiError as exc:
            await self._failed(sched, attempt, exc)
            return None
        record = PollRecord(job_id, self.wall(), None, answer.status, hooks=self.config.hooks)
        result = await self.store.finish_cancel(job_id, self.wall(), "requested", None, record)
        sched.cancel_pending = False
        log.warning("job.cancel_requested", job_id=job_id, status=answer.status, by="watcherd")
        return result

    async def _failed(self, sched: JobSchedule, attempt: int, exc: ApiError) -> None:
        """Keep the intent for the next poll, unless the service keeps refusing it."""
        give_up = isinstance(exc, ClientRequestError) and attempt >= MAX_CANCEL_ATTEMPTS
        state = "skipped" if give_up else "intent"
        await self.store.finish_cancel(sched.job_id, self.wall(), state, str(exc))
        sched.cancel_pending = not give_up
        log.error("job.cancel_failed", job_id=sched.job_id, attempt=attempt, error=str(exc))
