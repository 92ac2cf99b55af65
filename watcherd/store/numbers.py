"""Metric values as the store keeps them: JSON numbers as floats, losses as exact
number text (NaN kept), integers within SQLite's INTEGER range.

A leaf of the read path too (the read commands import it; it imports no dataclasses).
"""

from __future__ import annotations

import math
from typing import Any

from watcherd.model import dumps_exact, loads_exact

_INT64 = (-(2**63), 2**63 - 1)


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


def loss_value(loss: Any) -> float | None:
    """The REAL `loss` column of a record's loss: NULL when absent or NaN (text keeps NaN)."""
    if loss.__class__ is float:
        return None if loss != loss else loss
    value = number(loss)
    return None if value is None or math.isnan(value) else value


def loss_text(value: Any) -> str | None:
    """A loss as JSON number text (keeps NaN), None when it is not a number.

    A finite float's JSON text is its `repr` (what `json.dumps` writes), without the
    encoder's set-up: a poll writes one or two of these.
    """
    if value.__class__ is float and math.isfinite(value):
        return repr(value)
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
