"""Retry-After: the one reading of how long a server asks us to wait, capped.

Both the API client (a 429 or 503 pauses every request to the host) and webhook
hooks (a receiver's 429) read it here. The forms, first match wins:

- `retry-after-ms: 1500`: milliseconds (fractions allowed), as OpenAI-style APIs send;
- `Retry-After: 120`: seconds (fractions accepted);
- `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`: an HTTP date.

A negative delay or a date in the past means "now". Text that is none of these (and
NaN) is no hint at all. A wait longer than `cap` seconds, infinity included, is cut
to `cap`: a server asking for years is broken, and obeying it would stop us for good.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Final

#: The longest wait honoured unless configured otherwise (`api.max_retry_after`).
DEFAULT_MAX_RETRY_AFTER: Final = 3600.0


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """What a server asked for: `asked` seconds (maybe absurd), `delay` the wait we make."""

    delay: float  # 0 <= delay <= the cap
    asked: float  # as asked; negative for a past date, inf for an overflowing number

    @property
    def capped(self) -> bool:
        """True when the server asked for more than the cap allows."""
        return self.asked > self.delay


def parse_retry_after(
    headers: Mapping[str, str], *, now: float, cap: float = DEFAULT_MAX_RETRY_AFTER
) -> RetryAfter | None:
    """The wait `headers` ask for at wall-clock `now`, at most `cap` s; None if no valid hint.

    `headers` must answer lower-case names (httpx.Headers does, whatever the case sent).
    """
    asked = _asked(headers, now)
    if asked is None:
        return None
    return RetryAfter(delay=min(max(asked, 0.0), cap), asked=asked)


def _asked(headers: Mapping[str, str], now: float) -> float | None:
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    return _http_date(value, now)


def _number(text: str | None) -> float | None:
    """A decimal number (inf for one too big for a float); None for anything else or NaN."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _http_date(text: str, now: float) -> float | None:
    """Seconds from `now` until an HTTP date; None if `text` is not one."""
    # Imported here: `email` costs a read command (which imports the config, and with
    # it DEFAULT_MAX_RETRY_AFTER) about as much as the rest of its start-up.
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text.strip())
        if when.tzinfo is None:  # "-0000": UTC, with no promise about the source's zone
            when = when.replace(tzinfo=UTC)
        return when.timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
