"""Staying within what the service allows: the host gate, the rate cap and backoff.

- `HostGate`: one per host. A 429 or 503 with `Retry-After` pauses every request to
  that host until the time the service named; the pause is readable and settable,
  so the daemon can persist it and restore it after a restart.
- `RateLimiter`: spaces requests so that all callers together stay at `rate` per
  second (GCRA, a token bucket without a refill task).
- `retry_after`: how long the service asks us to wait.

Times given to or read from the gate are wall-clock epoch seconds. Clocks and sleeps
are injectable so tests never wait on real time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import anyio

from watcherd.errors import RateLimitedError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class HostGate:
    """Holds back every request to one host until `paused_until` (epoch seconds)."""

    __slots__ = ("_clock", "_on_pause", "_sleep", "_until")

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        on_pause: Callable[[float], None] | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._on_pause = on_pause
        self._until = 0.0

    def __repr__(self) -> str:
        return f"HostGate(paused_until={self._until!r})"

    @property
    def paused_until(self) -> float:
        """The epoch time until which requests wait; 0.0 (or a past time) when open."""
        return self._until

    def pause_until(self, resume_at: float) -> bool:
        """Pause every request until `resume_at`; never shortens a pause. True if extended.

        The `on_pause` callback (if any) is called with the new time when it is extended.
        """
        if not math.isfinite(resume_at) or resume_at <= self._until:
            return False
        self._until = resume_at
        if self._on_pause is not None:
            self._on_pause(resume_at)
        return True

    def is_paused(self) -> bool:
        """True while the pause lasts."""
        return self._until > self._clock()

    async def wait(self, deadline: float) -> None:
        """Return once the gate is open; raise RateLimitedError if it opens after `deadline`."""
        while True:
            now = self._clock()
            until = self._until
            if until <= now:
                return
            if until > deadline:
                raise RateLimitedError(
                    f"requests to this host are paused for another {until - now:.1f}s",
                    resume_at=until,
                    status=None,
                )
            await self._sleep(until - now)


class RateLimiter:
    """At most `rate` request starts per second across all callers, `burst` at once.

    Each caller reserves the next free slot and sleeps until it, so waiting callers
    are served in order without a background task. `rate <= 0` disables the cap.
    """

    __slots__ = ("_clock", "_interval", "_next", "_sleep", "_tolerance")

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._interval = 1.0 / rate if rate > 0 and math.isfinite(rate) else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        if self._interval == 0.0:
            return
        now = self._clock()
        theoretical = max(self._next, now)
        start = theoretical - self._tolerance
        self._next = theoretical + self._interval
        if start > now:
            await self._sleep(start - now)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The epoch time the service asks us to wait until, or None if it gave no valid hint.

    Reads `retry-after-ms` first, then `Retry-After` as (fractional) seconds or an HTTP
    date. No upper cap: the service knows best how long it needs.
    """
    millis = _non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return now + millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return now + seconds
    return _http_date(value)


def _non_negative(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _http_date(text: str) -> float | None:
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() if when > datetime(1970, 1, 1, tzinfo=UTC) else None
