"""Spend: what jobs cost, by UTC day, month, model or job, and the budget periods.

A job's price is the service's `total_price` (nano-dollars) at the last poll; it
grows while the job trains, so a job still running counts at its last known price
and is marked as such. A job's spend belongs to the UTC day (and month) it was
created (`created_at` of its job object; when watcherd first saw it, if that is
missing), like the service's own per-job billing.
"""

# No `from __future__ import annotations`: see `watcherd.model` (named tuples).

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple

NANO: Final = 1_000_000_000
#: The hook event a budget fires, once per period.
BUDGET_EXCEEDED: Final = "budget.exceeded"
PERIODS: Final = ("daily", "monthly")


class SpendRow(NamedTuple):
    """One job's spend as the store knows it."""

    job_id: str
    model: str | None
    created_at: float  # epoch seconds the spend belongs to
    total_price: int  # nano-dollars, the last known
    running: bool  # not settled yet: the price may still grow


class Period(NamedTuple):
    """One budget period: `daily` 2026-05-19 or `monthly` 2026-05, [start, end) in epoch."""

    name: str
    key: str
    start: float
    end: float

    @property
    def source(self) -> str:
        """The outbox's job column for this period's alert: `budget:daily:2026-05-19`."""
        return f"budget:{self.name}:{self.key}"


def period(name: str, now: float) -> Period:
    """The UTC day or month (`daily`, `monthly`) that holds `now`."""
    stamp = datetime.fromtimestamp(now, tz=UTC)
    if name == "daily":
        start = stamp.replace(hour=0, minute=0, second=0, microsecond=0)
        end_day = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        return Period(name, start.strftime("%Y-%m-%d"), start.timestamp(), end_day.timestamp())
    if name == "monthly":
        start = stamp.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
        return Period(name, start.strftime("%Y-%m"), start.timestamp(), end.timestamp())
    raise ValueError(f"unknown budget period {name!r}")


def spent(rows: Iterable[SpendRow], start: float, end: float = float("inf")) -> int:
    """Nano-dollars of the jobs whose spend falls in [start, end)."""
    return sum(r.total_price for r in rows if start <= r.created_at < end)


def day_of(row: SpendRow) -> str:
    """The UTC day a job's spend belongs to; one the calendar cannot hold (a
    `created_at` that is year 0 or 10000 in UTC) is its first or last day."""
    try:
        return datetime.fromtimestamp(row.created_at, tz=UTC).date().isoformat()  # year 1: 0001
    except (ValueError, OverflowError, OSError):
        return "0001-01-01" if row.created_at < 0 else "9999-12-31"


class Group(NamedTuple):
    """Spend of one group of `watcherd cost`."""

    key: str
    jobs: int
    nano: int
    running: int  # of those jobs, how many still run (priced as last seen)

    @property
    def dollars(self) -> float:
        """The spend in dollars."""
        return self.nano / NANO


def group(rows: Sequence[SpendRow], by: str) -> list[Group]:
    """Spend grouped `by` day (oldest first), model or job (costliest first)."""
    keys: dict[str, Callable[[SpendRow], str]] = {
        "day": day_of,
        "model": lambda r: r.model or "-",
        "job": lambda r: r.job_id,
    }
    buckets: dict[str, list[SpendRow]] = {}
    for row in rows:
        buckets.setdefault(keys[by](row), []).append(row)
    groups = [_group(key, members) for key, members in buckets.items()]
    if by == "day":
        return sorted(groups, key=lambda g: g.key)
    return sorted(groups, key=lambda g: (-g.nano, g.key))


def total(rows: Sequence[SpendRow]) -> Group:
    """Every row as one group."""
    return _group("total", rows)


def _group(key: str, rows: Sequence[SpendRow]) -> Group:
    return Group(key, len(rows), sum(r.total_price for r in rows), sum(r.running for r in rows))
