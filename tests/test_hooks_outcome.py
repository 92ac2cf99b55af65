"""The retry delay: full-jitter exponential backoff that honours Retry-After."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from tests.fakerng import Edge
from watcherd.hooks.outcome import Outcome, next_attempt_delay
from watcherd.model import INTERRUPTED


def test_ceiling_doubles_up_to_the_cap() -> None:
    """The upper bound is base * 2^(attempt-1), capped."""
    tops = [next_attempt_delay(n, base=5, cap=900, rng=Edge(True)) for n in range(1, 10)]
    assert tops == [5, 10, 20, 40, 80, 160, 320, 640, 900]
    assert next_attempt_delay(10_000, rng=Edge(True)) == 900
    assert next_attempt_delay(0, base=5, rng=Edge(True)) == 5


def test_floor_is_zero_or_retry_after() -> None:
    """Full jitter may retry at once, but never before Retry-After, even above the cap."""
    assert next_attempt_delay(3, rng=Edge(False)) == 0
    assert next_attempt_delay(3, retry_after=42, rng=Edge(False)) == 42
    assert next_attempt_delay(1, cap=10, retry_after=3600, rng=Edge(True)) == 3600


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0.01, 60),
    cap=st.floats(1, 3600),
    retry_after=st.none() | st.floats(0, 7200),
    seed=st.integers(0, 2**32),
)
def test_delay_bounds(
    attempt: int, base: float, cap: float, retry_after: float | None, seed: int
) -> None:
    """Every delay lies in [retry_after or 0, max(min(cap, base*2^(n-1)), retry_after)]."""
    delay = next_attempt_delay(
        attempt, base=base, cap=cap, retry_after=retry_after, rng=random.Random(seed)
    )
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    floor = retry_after or 0.0
    assert floor <= delay <= max(ceiling, floor)


def test_outcome_constructors() -> None:
    """The constructors set the state and keep the details."""
    assert Outcome.delivered("tail") == Outcome("delivered", None, "tail", None)
    assert Outcome.retry("x", retry_after=3).retry_after == 3
    assert Outcome.give_up("gone").state == "give_up"
    assert Outcome.interrupted() == Outcome("retry", INTERRUPTED)
