"""CI or nightly sizes for the reliability battery, and replayable seeds.

`WATCHERD_SOAK=1` switches every battery test to its nightly size (`make soak`).
`WATCHERD_SEED=N` replays a run: every test prints the seed it drew.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

T = TypeVar("T")

SOAK = os.environ.get("WATCHERD_SOAK", "") not in ("", "0")


def sized(ci: T, soak: T) -> T:
    """The CI value, or the nightly one under `WATCHERD_SOAK=1`."""
    return soak if SOAK else ci


def draw_seed(test: str) -> int:
    """A seed for this run (`WATCHERD_SEED` if set), printed so a failure can be replayed."""
    fixed = os.environ.get("WATCHERD_SEED")
    seed = int(fixed) if fixed else random.randrange(1 << 30)
    print(f"{test}: seed {seed} (replay: WATCHERD_SEED={seed})")
    return seed


def report(test: str, **figures: object) -> None:
    """Print one line of figures for the battery's report."""
    print(f"{test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
