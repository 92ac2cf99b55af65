"""The poller's event-log hook: when a job's events are fetched, and what a poll records.

Events come with the fewest requests (each fetch returns the whole log, and
`make bench` holds all requests to 0.2x a naive loop's):

- a retrieved job object carries the whole log in `events`, so a poll that
  retrieved the job takes them from there and sends no request of its own; every
  job that turns terminal gets that retrieve, so its ending (why it failed, the
  last checkpoint, the model path) is stored with its transition;
- a job that starts training (`running`) gets its log fetched (`GET .../events`)
  at once, and then every `poll.events_interval` while it trains (1 h by
  default, never more often than `poll.metrics_interval`);
- a terminal job whose object carried no log gets it fetched;
- the other changes (`pending` -> `queued`, `compressing` -> `uploading`, ...)
  fetch nothing: before training the log says only that the job was created, and
  after it the ending comes minutes later, with the whole log.

The log comes whole every time (no cursor); the store keeps each event once
(`watcherd.eventlog.event_keys`), in the same transaction as the poll's rows,
transition and hook deliveries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog

from watcherd.api.client import ApiClient, Job
from watcherd.config import PollConfig
from watcherd.errors import NotFoundError
from watcherd.model import is_terminal

#: The status in which a job's log grows (epochs, checkpoints, warnings).
TRAINING: Final = "running"

log = structlog.get_logger("watcherd.watch.events")


class EventFeed:
    """Decides when a job's event log is due and fetches it."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._due: dict[str, float] = {}  # job -> monotonic time its next periodic fetch is due

    async def fetch(
        self,
        api: ApiClient,
        poll: PollConfig,
        job: Job,
        *,
        changed: bool,
        retrieved: Mapping[str, Any] | None,
    ) -> list[dict[str, Any]] | None:
        """The job's whole event log if it is due now (None: not fetched this poll).

        `retrieved` is the job's object (`job.raw`) when this poll retrieved it, else None.
        """
        embedded = embedded_events(retrieved) if retrieved is not None else None
        if embedded is not None:
            self._fetched(job, poll)
            return embedded
        if not self._is_due(job, changed=changed):
            return None
        try:
            found = await api.events(job.id)
        except NotFoundError as exc:  # the job was just seen: "no events (yet)"
            log.info("poll.events_not_found", job_id=job.id, error=str(exc))
            found = []
        self._fetched(job, poll)
        return found

    def _is_due(self, job: Job, *, changed: bool) -> bool:
        if is_terminal(job.status):  # a retrieve that carried no log
            return changed
        if job.status != TRAINING:
            return False
        return changed or self.monotonic() >= self._due.get(job.id, 0.0)

    def _fetched(self, job: Job, poll: PollConfig) -> None:
        if is_terminal(job.status):  # never polled again: no timer to keep
            self._due.pop(job.id, None)
        else:
            self._due[job.id] = self.monotonic() + poll.events_interval


def embedded_events(job: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The `events` a full job object carries, when it carries a non-empty list of objects."""
    found = job.get("events")
    if not isinstance(found, list) or not found:
        return None
    if not all(isinstance(event, dict) for event in found):
        return None
    return found
