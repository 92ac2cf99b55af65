"""What the simulator saw: every request, its outcome, and the concurrency it reached."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as served. Times are wall-clock epoch seconds."""

    time: float  # when the request was fully read
    method: str
    path: str
    query: str
    status: int | None  # the status line sent; None if none was (a stall)
    fault: str | None  # the injected fault kind, if any
    retry_at: float | None  # for 429/503: the earliest time the client was told to retry
    duration: float  # seconds until the response ended (or the connection was dropped)
    authorized: bool


class SimStats:
    """Observability for tests: request log, counts, in-flight and its maximum."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.by_status: Counter[int | None] = Counter()
        self.by_fault: Counter[str] = Counter()

    def started(self) -> None:
        """A request is now being served."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finished(self, record: RequestRecord) -> None:
        """A request is done: log it."""
        with self._lock:
            self.in_flight -= 1
            self.requests.append(record)
            self.by_status[record.status] += 1
            if record.fault:
                self.by_fault[record.fault] += 1

    @property
    def total(self) -> int:
        """Requests served so far."""
        return len(self.requests)

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the request log."""
        with self._lock:
            return list(self.requests)

    def reset(self) -> None:
        """Forget everything seen so far (in-flight requests still count)."""
        with self._lock:
            self.requests.clear()
            self.by_status.clear()
            self.by_fault.clear()
            self.max_in_flight = self.in_flight
