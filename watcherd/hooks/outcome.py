"""What one hook attempt came to, and when to try again.

`Outcome.state` is one of:

- `delivered`: the hook accepted the event; the delivery is done.
- `retry`: this attempt failed; try again after `next_attempt_delay()` (the
  dispatcher turns the delivery `dead` once it has used `max_attempts`).
- `give_up`: the receiver said retrying is pointless (webhook 410, command exit 65);
  the delivery goes `dead` at once and only `watcherd hooks retry` replays it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from watcherd.backoff import Uniform, full_jitter
from watcherd.model import INTERRUPTED

State = Literal["delivered", "retry", "give_up"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt; `retry_after` is a minimum delay in seconds, if asked."""

    state: State
    error: str | None = None
    output_tail: str | None = None
    retry_after: float | None = None

    @classmethod
    def delivered(cls, output_tail: str | None = None) -> Outcome:
        """A successful attempt."""
        return cls("delivered", output_tail=output_tail)

    @classmethod
    def retry(
        cls, error: str, *, output_tail: str | None = None, retry_after: float | None = None
    ) -> Outcome:
        """A failed attempt worth repeating."""
        return cls("retry", error=error, output_tail=output_tail, retry_after=retry_after)

    @classmethod
    def give_up(cls, error: str, *, output_tail: str | None = None) -> Outcome:
        """A failed attempt that no repetition can fix."""
        return cls("give_up", error=error, output_tail=output_tail)

    @classmethod
    def interrupted(cls) -> Outcome:
        """What a dispatcher records when a graceful stop cancelled the attempt."""
        return cls("retry", error=INTERRUPTED)


def next_attempt_delay(
    attempt: int,
    *,
    base: float = 5.0,
    cap: float = 900.0,
    retry_after: float | None = None,
    rng: Uniform = random,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 for the first).

    Full jitter (`watcherd.backoff`), then raised to `retry_after` when the receiver
    asked for more (never capped: it asked).
    """
    delay = full_jitter(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None and retry_after > delay:
        return retry_after
    return delay
