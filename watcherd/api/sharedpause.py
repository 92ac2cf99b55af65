"""The Retry-After pause other daemons stored, read before each request starts.

Daemons sharing a database share one pause per host: the one that meets a 429 or 503
saves it before its own requests go on (`HostGate.extend`). For the others to obey it,
every request start is gated by a read of the stored pause that *began after the
request got there*: a request that starts after another daemon stored its pause waits
it out; one that was already on its way is in flight, like a request of the same
daemon sent before its 429 came back. Requests that arrive while a read is under way
share the next read, so a burst costs one or two reads, not one each.

While the database does not answer, requests go on with what the gate knows (its own
pauses, the last pause read), and the database is tried again after FAILED_RETRY
seconds; a failure is logged once per outage.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import structlog

from watcherd.errors import WatcherdError

#: Reads the pause stored for one host (epoch seconds), or None if none is stored.
Read = Callable[[], Awaitable[float | None]]

#: After a failed read, requests go on without reading for this long.
FAILED_RETRY: Final = 2.0

log = structlog.get_logger("watcherd.api")


class SharedPause:
    """Single-flight reads of the stored pause; each caller gets a read begun after its call."""

    __slots__ = (
        "_clock",
        "_down_until",
        "_lock",
        "_read",
        "_read_at",
        "_started",
        "_value",
        "reads",
    )

    def __init__(self, read: Read, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._clock = clock
        self._lock = anyio.Lock()
        self._started = 0  # reads begun so far
        self._value: float | None = None  # what the last read found
        self._read_at: float | None = None  # when it began (wall clock)
        self._down_until = 0.0  # monotonic time until which the database is not tried
        self.reads = 0  # reads made (for the benchmark and the tests)

    async def current(self) -> tuple[float | None, float | None]:
        """The stored pause, as read by a read that began after this call, and when that
        read began (wall clock; None if the database was not read: it does not answer)."""
        seen = self._started
        async with self._lock:
            if self._started > seen:  # a read began after our call and has finished
                return self._value, self._read_at
            if self._clock() < self._down_until:
                return self._value, None
            self._started += 1
            read_at = time.time()
            try:
                value = await self._read()
            except WatcherdError as exc:
                if not self._down_until:
                    log.warning("api.shared_pause_unread", error=str(exc), retry_in=FAILED_RETRY)
                self._down_until = self._clock() + FAILED_RETRY
                self._read_at = None
                return self._value, None
            self._value, self._read_at = value, read_at
            self.reads += 1
            if self._down_until:
                log.info("api.shared_pause_read_again")
                self._down_until = 0.0
            return value, read_at
