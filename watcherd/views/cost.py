"""`watcherd cost`: what the jobs cost, by day, model or job, from the stored prices.

A job still running counts at its last known price and is marked `*`. JSON keys:
by, since (ISO date or null), groups (key, jobs, dollars, running: how many of
those jobs still run), total (the same, over every group).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from watcherd.spend import Group, SpendRow, group, total
from watcherd.views._fmt import Column, table

_HEADS: Final = {"day": "DAY (UTC)", "model": "MODEL", "job": "JOB"}
_SPEND: Final = Column("SPEND", right=True)


def render_cost(rows: Sequence[SpendRow], *, by: str, color: bool, width: int) -> str:
    """The spend table, a total line, and a note on running jobs when there are any."""
    if not rows:
        return "No priced jobs yet."
    groups = group(rows, by)
    everything = total(rows)
    columns = (
        Column(_HEADS[by], shrink=True),
        Column("JOBS", right=True),
        Column("SPEND", right=True),
    )
    cells = [[(g.key, None), (str(g.jobs), None), (_money(g), None)] for g in [*groups, everything]]
    lines = table(columns, cells, color=color, width=width)
    if everything.running:
        lines.append(f"* includes {everything.running} running job(s) at the last known price")
    return "\n".join(lines)


def _money(g: Group) -> str:
    return f"${g.dollars:,.2f}" + (" *" if g.running else "  ")


def cost_json(rows: Sequence[SpendRow], *, by: str, since: str | None) -> dict[str, Any]:
    """The spend as a JSON-ready dict (keys in the module docstring)."""
    return {
        "by": by,
        "since": since,
        "groups": [_group_json(g) for g in group(rows, by)],
        "total": _group_json(total(rows)),
    }


def _group_json(g: Group) -> dict[str, Any]:
    return {"key": g.key, "jobs": g.jobs, "dollars": g.dollars, "running": g.running}
