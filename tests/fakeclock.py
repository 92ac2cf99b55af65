"""A clock for tests that only moves when someone sleeps on it."""

from __future__ import annotations

import anyio.lowlevel


class FakeTime:
    """Wall-clock time that advances exactly by what the code under test sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the sleep, move the clock, and let other tasks run."""
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()
