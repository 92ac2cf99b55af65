"""The budget check: `budget.exceeded` deliveries, once per UTC day or month over its limit.

The daemon calls `check` every minute (and `run --once` after its round). The
store compares each period's spend with its limit and queues the deliveries in one
transaction; their ids name the period, so a period fires once however often the
check runs or the daemon restarts. On a shared database the daemon holding the
`budget` lease checks; the ids keep a period single across daemons all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from watcherd.config import Config
from watcherd.spend import NANO, Period, period, spent
from watcherd.store.interface import StoreApi

log = structlog.get_logger("watcherd.watch.budget")

#: Seconds between budget checks in a running daemon.
CHECK_EVERY = 60.0
#: On a shared database one daemon checks a minute (the ids keep a period's alert
#: single anyway: this saves the others the query).
BUDGET_LEASE = "budget"


class BudgetWatch:
    """Fires `budget.exceeded` through the outbox when a period's spend passes its limit."""

    def __init__(
        self,
        store: StoreApi,
        *,
        on_deliveries: Callable[[], None] = lambda: None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.on_deliveries = on_deliveries
        self.wall = wall

    async def check(self, config: Config) -> list[str]:
        """Queue the deliveries of every period over its limit; return the ids new now."""
        now = self.wall()
        limits = [
            (period(name, now), round(dollars * NANO))
            for name, dollars in config.budget.limits().items()
        ]
        if not limits or not await self.store.try_lease(BUDGET_LEASE, CHECK_EVERY):
            return []
        ids = await self.store.fire_budget(limits, config.hooks, now)
        if ids:
            log.warning("budget.exceeded", deliveries=ids)
            self.on_deliveries()
        return ids


async def spend_now(store: StoreApi, now: float) -> dict[str, float]:
    """Dollars spent in the UTC day and month of `now`, and in all (`day`, `month`, `all`)."""
    rows = await store.spend()
    periods: dict[str, Period] = {"day": period("daily", now), "month": period("monthly", now)}
    found = {name: spent(rows, p.start, p.end) / NANO for name, p in periods.items()}
    return found | {"all": spent(rows, float("-inf")) / NANO}
