"""A job's metric history: rows generated lazily, in chunks, by index.

Rows are ordered by timestamp. For eval interval E, each block of E steps holds E
train rows and then one eval row (stamped less than a step after the last train
row), so the index of any step, and any row, is plain arithmetic; timestamps rise
with the index, so time bounds are found by bisection. Only the chunks a request
touches are ever built, and built chunks are cached.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import lru_cache

from watcherd.model import (
    EPOCH_KEY,
    STEP_KEY,
    TIMESTAMP_KEY,
    MetricFilter,
    MetricRow,
    filter_metrics,
)
from watcherd.sim.values import Curves, noise

CHUNK = 512
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RowPlan:
    """Everything a row depends on: curves, start time, step length, eval interval."""

    curves: Curves
    run_start_ns: int
    step_ns: int
    eval_steps: int
    total_rows: int  # rows through the job's planned last step
    stall_at: int | None = None  # rows after this step are logged `stall_ns` late
    stall_ns: int = 0

    def rows_through(self, step: int) -> int:
        """How many rows have a step at most `step`."""
        if step <= 0:
            return 0
        return step + (step // self.eval_steps if self.eval_steps else 0)

    def locate(self, index: int) -> tuple[int, bool]:
        """(step, is_eval) of the row at `index`."""
        size = self.eval_steps
        if not size:
            return index + 1, False
        block, rest = divmod(index, size + 1)
        if rest < size:
            return block * size + rest + 1, False
        return (block + 1) * size, True

    def timestamp(self, index: int) -> int:
        """Nanosecond timestamp of the row at `index` (strictly rising with the index)."""
        step, is_eval = self.locate(index)
        jitter = int((noise(self.curves.seed, step, 99) + 1) * 0.1 * self.step_ns)
        stamp = self.run_start_ns + step * self.step_ns + jitter
        if self.stall_at is not None and step > self.stall_at:
            stamp += self.stall_ns
        return stamp + min(_NS, self.step_ns // 2) if is_eval else stamp

    def row(self, index: int) -> MetricRow:
        """The row at `index`, keys in API order."""
        step, is_eval = self.locate(index)
        row: MetricRow = {
            TIMESTAMP_KEY: self.timestamp(index),
            STEP_KEY: step,
            EPOCH_KEY: self.curves.epoch(step),
        }
        row.update(self.curves.eval(step) if is_eval else self.curves.train(step))
        return row


class _Stamps:
    """The timestamps of a plan's rows as a sequence, for bisection."""

    __slots__ = ("plan",)

    def __init__(self, plan: RowPlan) -> None:
        self.plan = plan

    def __len__(self) -> int:
        return self.plan.total_rows

    def __getitem__(self, index: int) -> int:
        return self.plan.timestamp(index)


@lru_cache(maxsize=1024)
def _chunk(plan: RowPlan, k: int) -> tuple[MetricRow, ...]:
    """Rows k*CHUNK .. (k+1)*CHUNK-1 of a plan (cached)."""
    return tuple(plan.row(i) for i in range(k * CHUNK, min((k + 1) * CHUNK, plan.total_rows)))


@dataclass(frozen=True, slots=True)
class History:
    """The rows a job logs: the first `end` rows of its plan."""

    plan: RowPlan | None
    end: int

    @classmethod
    def build(cls, plan: RowPlan | None, last_step: int, cutoff_ns: int | None) -> History:
        """The history through `last_step`, without rows stamped after `cutoff_ns`."""
        if plan is None:
            return cls(None, 0)
        end = min(plan.rows_through(last_step), plan.total_rows)
        if cutoff_ns is not None:
            end = bisect.bisect_right(_Stamps(plan), cutoff_ns, 0, end)
        return cls(plan, end)

    def visible_end(self, now_ns: int) -> int:
        """How many rows are stamped at or before `now_ns`."""
        if self.plan is None:
            return 0
        return bisect.bisect_right(_Stamps(self.plan), now_ns, 0, self.end)

    def rows(self, lo: int, hi: int) -> list[MetricRow]:
        """Rows lo..hi-1 (the cached dicts themselves: do not mutate them)."""
        if self.plan is None or lo >= hi:
            return []
        out: list[MetricRow] = []
        for k in range(lo // CHUNK, (hi - 1) // CHUNK + 1):
            base = k * CHUNK
            out.extend(_chunk(self.plan, k)[max(lo - base, 0) : hi - base])
        return out

    def query(self, flt: MetricFilter, now_ns: int) -> list[MetricRow]:
        """`list_metrics` at `now_ns`: only the rows the bounds can reach are built."""
        plan, lo, hi = self.plan, 0, self.visible_end(now_ns)
        if plan is None:
            return []
        if flt.global_step_from is not None:
            lo = max(lo, plan.rows_through(flt.global_step_from - 1))
        if flt.global_step_to is not None:
            hi = min(hi, plan.rows_through(flt.global_step_to))
        stamps = _Stamps(plan)
        if flt.logged_at_from is not None and lo < hi:
            lo = bisect.bisect_left(stamps, flt.logged_at_from, lo, hi)
        if flt.logged_at_to is not None and lo < hi:
            hi = bisect.bisect_right(stamps, flt.logged_at_to, lo, hi)
        return filter_metrics(self.rows(lo, hi), flt)
