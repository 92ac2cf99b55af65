"""How `make test` spreads the test files over pytest-xdist workers (`-n 4 --dist loadfile`).

Each file is one unit of work, so a module-scoped fixture is set up once, on one worker.
On top of xdist's `loadfile`:

- QUIET_FILES are one unit: the batteries that count Retry-After breaches from the
  simulator's arrival times run one after another, never two at once.
- The longest units start first (SLOW_FIRST), so that none of them is left to run
  alone at the end; the rest follow in xdist's order. A stale entry only costs order.

(`--dist loadgroup` and `xdist_group` marks would say the same, but pytest 9.2's
structured node ids make xdist 3.8 ignore the groups: pytest-xdist issue 1386.)
"""

from __future__ import annotations

from typing import Final

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

QUIET: Final = "quiet batteries"
QUIET_FILES: Final = frozenset(
    {
        "tests/battery/test_faults.py",
        "tests/battery/test_pg_cluster.py",
        "tests/battery/test_pause_loops.py",
    }
)
#: Longest first, as measured under `make test` on the shared 2-core machine (seconds of
#: wall time per unit at a load of 4 to 8): about 200, 190, 150, 140, then 100 down to 30.
SLOW_FIRST: Final = (
    QUIET,
    "tests/test_store_metrics.py",
    "tests/test_daemon_e2e.py",
    "tests/test_cli_metrics.py",
    "tests/test_cli_events.py",
    "tests/battery/test_stop_loop.py",
    "tests/test_wait.py",
    "tests/test_health.py",
    "tests/test_terminal_safety.py",
    "tests/test_cli_alerts.py",
    "tests/test_daemon_store.py",
    "tests/test_cli_jobs.py",
    "tests/battery/test_model.py",
    "tests/battery/test_bad_config.py",
    "tests/test_pg_daemon.py",
    "tests/test_pg_joblist.py",
    "tests/test_config_errors.py",
    "tests/test_daemon_pause.py",
    "tests/test_sim_cli.py",
    "tests/battery/test_kill_loop.py",
    "tests/battery/test_large_history.py",
    "tests/battery/test_alert_kills.py",
    "tests/test_cli_cancel.py",
)


def rank(scope: str) -> int:
    """Where a unit starts: SLOW_FIRST in order, then every other one."""
    return SLOW_FIRST.index(scope) if scope in SLOW_FIRST else len(SLOW_FIRST)


class PlannedFileScheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist is untyped
    """`loadfile`, with QUIET_FILES as one unit and SLOW_FIRST started first."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        path = super()._split_scope(nodeid)
        return QUIET if path in QUIET_FILES else path

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._ordered:  # the queue is complete by the first assignment
            self._ordered = True
            ordered = sorted(self.workqueue.items(), key=lambda unit: rank(unit[0]))
            self.workqueue.clear()
            self.workqueue.update(ordered)
        super()._assign_work_unit(node)
