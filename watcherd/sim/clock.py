"""Sim clocks: callables returning sim epoch seconds.

`SpeedClock` runs `speed` times faster than the wall clock from an anchor;
`ManualClock` only moves when a test moves it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: What the world asks for the time: sim seconds since the Unix epoch.
Clock = Callable[[], float]


class SpeedClock:
    """Sim time that starts at `epoch` (default: now) and runs `speed` times real time."""

    __slots__ = ("epoch", "real_start", "speed")

    def __init__(self, speed: float = 1.0, epoch: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self.real_start = time.time()
        self.epoch = self.real_start if epoch is None else float(epoch)

    def __call__(self) -> float:
        return self.epoch + (time.time() - self.real_start) * self.speed

    def real_delay(self, sim_seconds: float) -> float:
        """Wall-clock seconds that `sim_seconds` of sim time take."""
        return sim_seconds / self.speed


class ManualClock:
    """A clock stepped by hand (thread-safe), for tests."""

    __slots__ = ("_lock", "_now")

    def __init__(self, start: float = 1_779_196_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to `now` (sim epoch seconds)."""
        with self._lock:
            self._now = float(now)
