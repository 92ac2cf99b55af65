"""One job's poll: its object (from the list, or a retrieve), its new rows, its event log."""

from __future__ import annotations

from typing import Any

import structlog

from watcherd.api.client import Job
from watcherd.errors import ApiError, AuthError, NotFoundError, StoreError
from watcherd.model import MetricFilter, MetricRecord, is_terminal
from watcherd.store import PollRecord
from watcherd.watch.pollrecord import PollRecording
from watcherd.watch.schedule import QUIET_STATUSES, JobSchedule

log = structlog.get_logger("watcherd.watch.poller")


class JobPolls(PollRecording):
    """Polls one job at a time: fetch what is due, then record it (see `PollRecording`)."""

    async def _poll_job(self, sched: JobSchedule, listed: Job | None) -> None:
        async with self._limiter:
            if self.mine is not None and sched.job_id not in self.mine:
                return  # given back or lost while it waited for a slot: its holder polls it
            try:
                await self._poll_job_now(sched, listed)
            except StoreError as exc:
                if self.mine is None:  # a single daemon's own database failing: as before
                    raise
                self._store_failed(sched, exc)

    async def _poll_job_now(self, sched: JobSchedule, listed: Job | None) -> None:
        if self.monotonic() < self._auth_until:
            return
        if sched.metrics_pending:
            await self._catch_up(sched)
            return
        try:
            job = listed
            if job is None or self._needs_full_object(sched, job):
                job = await self.api.retrieve(sched.job_id)
        except NotFoundError as exc:
            await self._not_found(sched, exc)
            return
        except AuthError as exc:
            self._auth_failed(exc)
            return
        except ApiError as exc:
            await self._failed(sched, exc)
            return
        changed = job.status != sched.status
        metrics, error = await self._try_metrics(sched, job.status, changed=changed)
        retrieved = job is not listed
        raw = job.raw if changed or retrieved else None  # decoded once: the log's, the record's
        events = await self._try_events(job, changed=changed, retrieved=raw if retrieved else None)
        await self._record(sched, job, metrics, error, events, raw)

    def _needs_full_object(self, sched: JobSchedule, listed: Job) -> bool:
        """A job turning terminal gets a retrieve: its complete last object goes to hooks.

        Other changes keep the list's object, which holds the same fields but `events`.
        """
        return listed.status != sched.status and is_terminal(listed.status)

    async def _try_metrics(
        self, sched: JobSchedule, status: str, *, changed: bool
    ) -> tuple[list[MetricRecord], ApiError | None]:
        """New rows, or the error that kept them: the status is recorded either way."""
        try:
            return await self._fetch_metrics(sched, status, changed=changed), None
        except AuthError as exc:
            self._auth_failed(exc)
            return [], exc
        except ApiError as exc:
            return [], exc

    async def _try_events(
        self, job: Job, *, changed: bool, retrieved: dict[str, Any] | None
    ) -> list[dict[str, Any]] | None:
        """The job's event log when due (None: not this poll); a failure holds no status back.

        A failed fetch leaves the log due, so the job's next poll fetches it again.
        """
        try:
            return await self.events.fetch(
                self.api, self.config.poll, job, changed=changed, retrieved=retrieved
            )
        except AuthError as exc:
            self._auth_failed(exc)
        except ApiError as exc:
            self.stats.errors += 1
            log.warning("poll.events_failed", job_id=job.id, error=str(exc))
        return None

    async def _fetch_metrics(
        self, sched: JobSchedule, status: str, *, changed: bool
    ) -> list[MetricRecord]:
        """New rows from the cursor on, when due; always on a status change.

        On SQLite a big body is stored batch by batch as it arrives (each batch one
        transaction, the cursor moving on with it) and the last batch is returned, for
        `_record`; PostgreSQL takes the whole page in one transaction.
        """
        # A job cancelled mid-run may have rows we never saw: only the statuses before
        # training (QUIET_STATUSES) are sure to have none.
        if status in QUIET_STATUSES and sched.max_step is None:
            return []
        now = self.monotonic()
        if not changed and now < sched.metrics_at and not self.alerting.look_now(sched, status):
            return []
        flt = MetricFilter(global_step_from=sched.cursor)
        batches = self._batches

        async def store_batch(batch: list[MetricRecord]) -> None:
            assert batches is not None
            memory = self.alerting.absorb(sched, status, batch).to_json()
            await batches.record_rows(sched.job_id, batch, self.wall(), memory)
            sched.alert_state = memory
            self._took_rows(sched, batch)

        on_batch = None if batches is None else store_batch
        try:
            rows = await self.api.metric_records(sched.job_id, flt, on_batch)
        except NotFoundError as exc:
            # The job was just seen, so this 404 means "no metrics (yet)", not a missing
            # job: record the status anyway; the rows come with a later fetch.
            log.info("poll.metrics_not_found", job_id=sched.job_id, error=str(exc))
            rows = []
        sched.metrics_at = now + self.config.poll.metrics_interval
        sched.metrics_failures = 0
        sched.fetched = True
        return rows

    async def _catch_up(self, sched: JobSchedule) -> None:
        """A finished job whose last metrics fetch failed: fetch them again, from the cursor.

        Its transition and hooks are recorded already; this page is its rows and cursor.
        """
        status = sched.status or ""
        try:
            rows = await self._fetch_metrics(sched, status, changed=True)
        except AuthError as exc:
            self._auth_failed(exc)
            return
        except ApiError as exc:
            self._metrics_failed(sched, status, exc)
            error = f"metrics: {exc}"
            await self.store.record_failure(sched.job_id, self.wall(), error, not_found=False)
            return
        record = PollRecord(sched.job_id, self.wall(), job=None, status=status, records=rows)
        result = await self.store.record_poll(record)
        self._took_rows(sched, rows)
        sched.metrics_pending = sched.rate_limited = False
        self.stats.polls += 1
        log.info("poll.metrics_caught_up", job_id=sched.job_id, new_rows=result.new_rows)
