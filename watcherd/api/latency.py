"""A fixed-bucket latency histogram: cumulative counts, as Prometheus histograms want.

The API client observes each attempt's duration (monotonic clock, body included);
`watcherd.daemon.prometheus` prints it as `watcherd_api_request_duration_seconds`. Cost per
observation: one bisect over a dozen bounds and two additions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final

#: Upper bounds in seconds (the last, +Inf, is implicit): 5 ms to a 30 s deadline.
BOUNDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class LatencySnapshot:
    """Cumulative counts per upper bound (`le`), the total count and sum of seconds."""

    buckets: tuple[tuple[float, int], ...] = ()
    count: int = 0
    total: float = 0.0


class Histogram:
    """Counts observations into BOUNDS; `snapshot()` gives cumulative counts."""

    def __init__(self, bounds: tuple[float, ...] = BOUNDS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._total = 0.0

    def observe(self, seconds: float) -> None:
        """Record one duration."""
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self._total += seconds

    def snapshot(self) -> LatencySnapshot:
        """Cumulative counts for each finite bound; `count` is the +Inf bucket."""
        running, buckets = 0, []
        for bound, n in zip(self._bounds, self._counts, strict=False):
            running += n
            buckets.append((bound, running))
        return LatencySnapshot(tuple(buckets), sum(self._counts), self._total)
