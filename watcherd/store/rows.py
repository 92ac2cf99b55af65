"""Turning metric rows into the columns stored beside their exact JSON text."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from watcherd.errors import StoreError
from watcherd.model import (
    TIMESTAMP_KEY,
    MetricRecord,
    MetricRow,
    dumps_exact,
    loads_exact,
    row_kind,
    row_step,
)

#: (job_id, kind, step, timestamp, loss, row_json): one `metrics` insert.
MetricParams = tuple[str, str, int, int, float | None, str]

_INT64 = (-(2**63), 2**63 - 1)
# The encoder `model.dumps_exact` builds on every call, built once (same options, same text).
_ENCODE = json.JSONEncoder(allow_nan=True, separators=(",", ":")).encode


def clamp64(value: int) -> int:
    """`value` limited to SQLite's INTEGER range (bounds beyond it admit everything)."""
    return min(max(value, _INT64[0]), _INT64[1])


def number(value: Any) -> float | None:
    """A JSON number as a float (NaN and ±Infinity included), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond a float's range (never compared as a float)
        return math.inf if value > 0 else -math.inf


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


def loss_value(loss: Any) -> float | None:
    """The REAL `loss` column of a record's loss: NULL when absent or NaN (text keeps NaN)."""
    if loss.__class__ is float:
        return None if loss != loss else loss
    value = number(loss)
    return None if value is None or math.isnan(value) else value


def record_params(job_id: str, records: Sequence[MetricRecord]) -> list[MetricParams]:
    """Insert parameters for records (checked by the API layer as they were decoded)."""
    return [
        (job_id, kind, step, 0 if stamp is None else stamp, loss_value(loss), text)
        for kind, step, stamp, loss, text in records
    ]


def page_params(
    job_id: str, rows: Sequence[MetricRow], records: Sequence[MetricRecord]
) -> tuple[list[MetricParams], list[Any]]:
    """A page's insert parameters and each row's decoded loss: decoded rows, then records.

    Both backends store a page from these, so its rows are stored alike in either.
    """
    params = metric_params(job_id, rows) if rows else []
    losses = [row.get(f"{p[1]}/loss") for p, row in zip(params, rows, strict=True)]
    if records:
        params += record_params(job_id, records)
        losses += [r[3] for r in records]
    return params, losses


def metric_params(job_id: str, rows: Sequence[MetricRow]) -> list[MetricParams]:
    """Insert parameters for `rows`; StoreError names the first row that cannot be stored."""
    params: list[MetricParams] = []
    for index, row in enumerate(rows):
        try:
            kind, step = row_kind(row), row_step(row)
            if clamp64(step) != step:
                raise ValueError(f"train/global_step out of range: {step}")
            params.append(
                (job_id, kind, step, _timestamp(row), loss_column(row, kind), dumps_exact(row))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{job_id}: metric row {index} cannot be stored: {exc!r}") from exc
    return params


def row_loss_text(row: MetricRow, kind: str) -> str | None:
    """The `{kind}/loss` of a row as JSON number text (keeps NaN), else None."""
    return loss_text(row.get(f"{kind}/loss"))


def loss_text(value: Any) -> str | None:
    """A loss as JSON number text (keeps NaN), None when it is not a number."""
    return None if number(value) is None else dumps_exact(value)


def text_number(text: str | None) -> float | None:
    """Inverse of `loss_text`: the float, NaN and ±Infinity included.

    `float` reads every JSON number text (and NaN, Infinity, -Infinity) as `json.loads`
    then `number` would, at a fraction of the cost: an integer text rounds to the same
    float either way, and one past a float's range is infinite either way. Only `-0`
    differs (an int 0, so 0.0); anything `float` refuses takes the JSON path.
    """
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return number(loads_exact(text))
    return 0.0 if text == "-0" else value
