"""The one Retry-After parser: its three forms, junk, the past, and the cap."""

from __future__ import annotations

import math

import httpx
import pytest

from watcherd.retry import DEFAULT_MAX_RETRY_AFTER, RetryAfter, parse_retry_after

NOW = 1000.0


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"retry-after": "120"}, 120.0),
        ({"Retry-After": "3600"}, 3600.0),
        ({"retry-after": " 0.25 "}, 0.25),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "x", "retry-after": "2"}, 2.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:20:00 GMT"}, 200.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:20:00 -0000"}, 200.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 0.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
        ({}, None),
    ],
)
def test_forms_junk_and_the_past(headers: dict[str, str], delay: float | None) -> None:
    """Seconds, fractions, ms (first), HTTP dates; junk is no hint; the past means now."""
    found = parse_retry_after(httpx.Headers(headers), now=NOW)
    assert (None if found is None else found.delay) == delay


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "999999999"},
        {"retry-after": "1e300"},
        {"retry-after": "1" * 400},
        {"retry-after-ms": "1e308"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
)
def test_absurd_waits_are_capped(headers: dict[str, str]) -> None:
    """An absurd wait (huge, overflowing, far-future date) is cut to the cap and says so."""
    found = parse_retry_after(httpx.Headers(headers), now=NOW)
    assert found is not None and found.capped
    assert found.delay == DEFAULT_MAX_RETRY_AFTER
    assert found.asked > DEFAULT_MAX_RETRY_AFTER or math.isinf(found.asked)


def test_the_cap_is_the_callers() -> None:
    """A caller's cap applies; a wait within it is not marked capped."""
    assert parse_retry_after({"retry-after": "90"}, now=NOW, cap=60.0) == RetryAfter(60.0, 90.0)
    assert not RetryAfter(30.0, 30.0).capped
