"""Full-jitter exponential backoff: how long to wait after a failure, the one rule.

The API client (between the tries of one request), the poller (after a job's failed
polls) and the hook dispatcher (between delivery attempts) draw their delays here,
each with its own base and cap.
"""

from __future__ import annotations

from typing import Protocol


class Uniform(Protocol):
    """The part of `random` that backoff needs (a seeded `random.Random` fits)."""

    def uniform(self, a: float, b: float, /) -> float: ...


def full_jitter(attempt: int, *, base: float, cap: float, rng: Uniform) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 for the first).

    Uniform in `[0, min(cap, base * 2 ** (attempt - 1))]` (AWS "full jitter"): the
    ceiling doubles per attempt up to `cap`. An attempt below 1 counts as 1, and the
    exponent stops at 62, so no attempt count overflows.
    """
    exponent = min(max(attempt, 1) - 1, 62)
    return rng.uniform(0.0, min(cap, base * 2.0**exponent))
