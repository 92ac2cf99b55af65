"""Turning metric rows into the columns stored beside their exact JSON text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import ne
from typing import Any, Final, cast

from watcherd.errors import StoreError
from watcherd.model import (
    TIMESTAMP_KEY,
    MetricRecord,
    MetricRecords,
    MetricRow,
    dumps_exact,
    row_kind,
    row_step,
)
from watcherd.store.numbers import clamp64, loss_value, number


def loss_column(row: MetricRow, kind: str) -> float | None:
    """The REAL `loss` column: NULL when absent or NaN, on purpose (row_json keeps NaN)."""
    value = number(row.get(f"{kind}/loss"))
    return None if value is None or math.isnan(value) else value


def _timestamp(row: MetricRow) -> int:
    value = row.get(TIMESTAMP_KEY, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"timestamp is not a number: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"timestamp is not finite: {value!r}")
    stamp = int(value)
    if clamp64(stamp) != stamp:
        raise ValueError(f"timestamp out of range: {value!r}")
    return stamp


@dataclass(frozen=True, slots=True)
class PageRows:
    """One page's rows as the `metrics` table takes them, a column each; both backends
    store a page from this, so its rows are stored alike in either.

    `losses` is the REAL `loss` column (NULL when absent or NaN); `raw_losses` each
    row's `{kind}/loss` as decoded, for the job's latest loss (written as text, NaN kept).
    """

    job_id: str
    kinds: Sequence[str] = ()
    steps: Sequence[int] = ()
    stamps: Sequence[int] = ()
    losses: Sequence[float | None] = ()
    texts: Sequence[str] = ()
    raw_losses: Sequence[Any] = ()

    def __len__(self) -> int:
        return len(self.steps)

    def select(self, rows: Sequence[int]) -> PageRows:
        """The page's rows at these indices, in this order."""
        return PageRows(
            self.job_id,
            [self.kinds[i] for i in rows],
            [self.steps[i] for i in rows],
            [self.stamps[i] for i in rows],
            [self.losses[i] for i in rows],
            [self.texts[i] for i in rows],
            [self.raw_losses[i] for i in rows],
        )

    def then(self, other: PageRows) -> PageRows:
        """This page's rows, then `other`'s."""
        return PageRows(
            self.job_id,
            [*self.kinds, *other.kinds],
            [*self.steps, *other.steps],
            [*self.stamps, *other.stamps],
            [*self.losses, *other.losses],
            [*self.texts, *other.texts],
            [*self.raw_losses, *other.raw_losses],
        )


def record_rows(job_id: str, records: Sequence[MetricRecord]) -> PageRows:
    """Records (checked by the API layer as they were decoded) as a page's columns.

    A column pass each in C, no tuple per row: a first fetch brings 200,000 rows. A
    batch the API client's fast decoder made (`MetricRecords`) keeps its columns.
    """
    if not records:
        return PageRows(job_id)
    if isinstance(records, MetricRecords) and records.whole():
        kinds, steps, found, raw, texts = (records.kinds, records.steps, records.stamps,
                                           records.losses, records.texts)  # fmt: skip
    else:
        kinds, steps, found, raw, texts = zip(*records, strict=True)
    return PageRows(job_id, kinds, steps, _stamp_column(found), _loss_column(raw), texts, raw)


def _stamp_column(stamps: Sequence[int | None]) -> Sequence[int]:
    """The timestamps, 0 for a row that has none (the column is NOT NULL)."""
    if None in stamps:
        return [0 if s is None else s for s in stamps]
    return cast("Sequence[int]", stamps)


def _loss_column(raw: Sequence[Any]) -> Sequence[float | None]:
    """`loss_value` of each loss; the losses themselves when all are floats (not NaN) or None."""
    if set(map(type, raw)) <= _FLOAT_OR_NONE and not any(map(ne, raw, raw)):
        return raw
    return list(map(loss_value, raw))


_FLOAT_OR_NONE: Final = frozenset({float, type(None)})


def page_rows(job_id: str, rows: Sequence[MetricRow], records: Sequence[MetricRecord]) -> PageRows:
    """A page's columns: decoded rows (as `dumps_exact` text), then records."""
    if not rows:
        return record_rows(job_id, records)
    page = metric_rows(job_id, rows)
    return page.then(record_rows(job_id, records)) if records else page


def metric_rows(job_id: str, rows: Sequence[MetricRow]) -> PageRows:
    """Decoded rows as a page's columns; StoreError names the first row that cannot be stored."""
    kinds: list[str] = []
    steps: list[int] = []
    stamps: list[int] = []
    texts: list[str] = []
    for index, row in enumerate(rows):
        try:
            kind, step = row_kind(row), row_step(row)
            if clamp64(step) != step:
                raise ValueError(f"train/global_step out of range: {step}")
            stamps.append(_timestamp(row))
            texts.append(dumps_exact(row))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{job_id}: metric row {index} cannot be stored: {exc!r}") from exc
        kinds.append(kind)
        steps.append(step)
    raw = [row.get(f"{kind}/loss") for kind, row in zip(kinds, rows, strict=True)]
    losses = [loss_column(row, kind) for kind, row in zip(kinds, rows, strict=True)]
    return PageRows(job_id, kinds, steps, stamps, losses, texts, raw)
