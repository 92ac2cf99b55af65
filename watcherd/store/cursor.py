"""The settled cursor: where a job's next metrics fetch starts, kept on its job row.

`global_step_from` for the next fetch is the lowest step among the job's rows logged
within `model.SETTLE_NS` of its newest row, in the unit of its timestamps
(`watcherd.stamps`; README, "How it polls"). The writer sets
`jobs.cursor_step` in the transaction of every page that brings rows, through the
`metrics_order` index: one probe per kind for the newest timestamp, then a range over
the last few seconds of rows. Reading it (start-up, `health`, `add`) is a column of
the job row, whatever the length of the job's history.
"""

from __future__ import annotations

from typing import Final

from watcherd.model import SETTLE_NS
from watcherd.stamps import unit_sql

#: Below every timestamp: the newest of a kind that has no rows.
_NONE: Final = -(2**63)


def _newest(kind: str) -> str:
    return (
        f"coalesce((SELECT max(timestamp) FROM metrics WHERE job_id = jobs.job_id"
        f" AND kind = '{kind}'), {_NONE})"
    )


def settle_floor(newest: str) -> str:
    """Rows after this SQL expression are within the settle window of the job's newest
    row: 5 s in its own unit. `newest` is a query giving that row's timestamp as `n`
    (SQLite and PostgreSQL alike)."""
    return f"(SELECT n - {SETTLE_NS} / {unit_sql('n')} FROM ({newest}) AS newest)"


_FLOOR: Final = settle_floor(f"SELECT max({_newest('train')}, {_newest('eval')}) AS n")

#: The cursor of the job row `jobs` (an SQL expression; NULL for a job without rows).
#: INDEXED BY: the planner would otherwise walk every row of the job by its unique key.
SETTLED: Final = (
    "(SELECT min(m.step) FROM metrics AS m INDEXED BY metrics_order"
    " WHERE m.job_id = jobs.job_id AND m.kind IN ('train', 'eval')"
    f" AND m.timestamp > {_FLOOR})"
)

#: Recompute one job's stored cursor; one parameter, the job ID.
UPDATE: Final = f"UPDATE jobs SET cursor_step = {SETTLED} WHERE job_id = ?"
