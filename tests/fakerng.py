"""A stand-in for `random` in backoff tests: it always draws one end of the range."""

from __future__ import annotations


class Edge:
    """An rng that always picks one end of the range."""

    def __init__(self, top: bool) -> None:
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a
