"""The poller's records: one poll written to the store, and the schedule moved on after it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from watcherd.api.client import Job
from watcherd.errors import ApiError
from watcherd.eventlog import price_facts
from watcherd.model import KNOWN_STATUSES, MetricRecord
from watcherd.store import PollRecord, PollResult
from watcherd.watch.pollfailures import PollFailures
from watcherd.watch.schedule import JobSchedule, settled_cursor

log = structlog.get_logger("watcherd.watch.poller")


class PollRecording(PollFailures):
    """Writes a poll (status, rows, events, the rules' verdict) and acts on the result."""

    async def _record(
        self,
        sched: JobSchedule,
        job: Job,
        metrics: list[MetricRecord],
        error: ApiError | None,
        events: list[dict[str, Any]] | None,
        raw: dict[str, Any] | None,
    ) -> None:
        """Write the poll; `raw` is the job's whole object to store (None: only its status)."""
        observed = self.wall()
        facts = job.facts()  # the fields the rules and the spend read, not the whole object
        total_price, token_count = price_facts(facts)
        record = PollRecord(
            job_id=sched.job_id,
            observed_at=observed,
            job=raw,
            status=job.status,
            hooks=self.config.hooks,
            seconds_remaining=job.seconds_remaining,
            records=metrics,
            metrics_error=None if error is None else str(error),
            events=events,
            total_price=total_price,
            token_count=token_count,
            evaluation=self.alerting.evaluate(sched, job.status, facts, metrics),
        )
        result = await self.store.record_poll(record)
        self._seen[sched.job_id] = observed
        sched.rate_limited = False
        if error is not None:
            self._metrics_failed(sched, job.status, error)
        self._after_record(sched, job, metrics, result)
        await self._after_alerts(sched, record)
        if result.restarts and self.follow_restarts:
            await self._follow(sched.job_id, result.restarts)

    async def _after_alerts(self, sched: JobSchedule, record: PollRecord) -> None:
        """Keep the rules' new memory; make a cancel that was just decided or is pending
        (only where cancelling is allowed: never from `wait`)."""
        evaluation = record.evaluation
        if evaluation is not None:
            sched.alert_state = evaluation.state.to_json()
            sched.cancel_pending = sched.cancel_pending or evaluation.cancel is not None
        if sched.cancel_pending and record.status is not None and self.config.allow_cancel:
            result = await self.alerting.settle_cancel(self.api, sched, record.status)
            if result is not None and result.transition is not None:
                sched.status = result.transition[1]
                sched.next_at = self.monotonic() + self.config.poll.min_interval
            if result is not None and result.deliveries:
                self.on_deliveries()

    async def _follow(self, job_id: str, restarts: Sequence[str]) -> None:
        """Watch the jobs the service restarted `job_id` as (the store already does)."""
        for new_id, state in (await self.store.job_states(only=restarts)).items():
            if new_id not in self.jobs:
                self.jobs[new_id] = JobSchedule(new_id, state.status, state.max_step)
            log.info("job.restarted", job_id=job_id, new_job_id=new_id)
        self.wake()

    def _after_record(
        self, sched: JobSchedule, job: Job, metrics: list[MetricRecord], result: PollResult
    ) -> None:
        self.stats.polls += 1
        self.stats.last_success_at = self.wall()
        self.stats.auth_error = None
        self._auth_failures = 0
        self._took_rows(sched, metrics)
        if result.transition is not None:
            log.info(
                "job.transition",
                job_id=sched.job_id,
                from_status=result.transition[0],
                to_status=result.transition[1],
                new_rows=result.new_rows,
            )
        if job.status not in KNOWN_STATUSES and job.status not in self._warned_statuses:
            self._warned_statuses.add(job.status)
            log.warning("job.unknown_status", job_id=sched.job_id, status=job.status)
        sched.status = job.status
        sched.failures = 0
        changed = result.transition is not None
        if not sched.metrics_pending:  # else the metrics' own retry time stands
            sched.next_at = self._next_look(sched, job, changed=changed)
        if result.deliveries:
            self.on_deliveries()

    @staticmethod
    def _took_rows(sched: JobSchedule, rows: list[MetricRecord]) -> None:
        """Move the job's highest step and metrics cursor past `rows`, just stored."""
        if rows:
            top = max(r[1] for r in rows)
            sched.max_step = top if sched.max_step is None else max(sched.max_step, top)
            sched.cursor = settled_cursor(rows, sched.cursor)
