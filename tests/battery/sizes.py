"""CI or nightly sizes for the reliability battery, and replayable seeds.

`WATCHERD_SOAK=1` switches every battery test to its nightly size (`make soak`).
`WATCHERD_SEED=N` replays a run: every test prints the seed it drew.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from pathlib import Path
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


#: Every figure line printed this session, for the summary table at its end.
REPORTS: list[tuple[str, dict[str, object]]] = []


def report(test: str, **figures: object) -> None:
    """Print one line of figures for the battery's report, and keep it for the summary."""
    REPORTS.append((test, figures))
    print(f"{test}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def wait_watching_rss(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, int]:
    """Wait for `proc`; its exit code and its RSS (KiB) once started (1 s in) and at the end."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            status = Path(f"/proc/{proc.pid}/status").read_text()
            seen.append(
                int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
            )
        time.sleep(0.2)
    code = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    started = seen[min(5, len(seen) - 1)] if seen else 0  # samples are 0.2 s apart
    return code, started, (seen[-1] if seen else 0)
