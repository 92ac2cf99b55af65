"""Turn metric rows into one (steps, values) series per plottable key, quickly.

A 200,000-row history must chart in a few tens of milliseconds, so rows are grouped
by their key signature first (train and eval rows each share one) and every column is
pulled out with C-level `map` calls instead of a Python loop per value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Final

from watcherd.model import STEP_KEY, MetricRow

_SKIP_BASES: Final = frozenset({"timestamp", "step", "global_step", "epoch"})
_PLAIN_NUMBERS: Final = frozenset({int, float})


@dataclass(frozen=True, slots=True)
class Series:
    """One metric key's points in row order: x is the row's `train/global_step`."""

    key: str
    xs: list[float]
    ys: list[float]

    @property
    def non_finite_steps(self) -> list[tuple[float, float]]:
        """(step, value) of every NaN or infinite value, in row order."""
        if _all_finite(self.ys):
            return []
        return [(x, y) for x, y in zip(self.xs, self.ys, strict=True) if not math.isfinite(y)]


def is_skipped(key: str) -> bool:
    """True for the keys the `together` CLI never charts (steps, epochs, timestamps)."""
    base = key.rsplit("/", 1)[-1]
    return base in _SKIP_BASES or base.endswith(("_step", "_epoch"))


def collect_series(rows: Sequence[MetricRow]) -> list[Series]:
    """Every plottable numeric key as a series, keys in first-seen order."""
    groups: dict[tuple[str, ...], list[MetricRow]] = {}
    for row in rows:
        if STEP_KEY in row:
            groups.setdefault(tuple(row), []).append(row)
    owners: dict[str, list[tuple[str, ...]]] = {}
    for signature in groups:
        for key in signature:
            if not is_skipped(key):
                owners.setdefault(key, []).append(signature)
    found = (_series_for(key, sigs, groups, rows) for key, sigs in owners.items())
    return [series for series in found if series.xs]


def _series_for(
    key: str,
    signatures: list[tuple[str, ...]],
    groups: dict[tuple[str, ...], list[MetricRow]],
    rows: Sequence[MetricRow],
) -> Series:
    """The series of `key`: one group's columns, or a row-order scan when it spans several."""
    if len(signatures) == 1:
        members = groups[signatures[0]]
        xs: list[object] = list(map(itemgetter(STEP_KEY), members))
        ys: list[object] = list(map(itemgetter(key), members))
    else:
        present = [row for row in rows if key in row and STEP_KEY in row]
        xs = [row[STEP_KEY] for row in present]
        ys = [row[key] for row in present]
    if not set(map(type, ys)) <= _PLAIN_NUMBERS or not set(map(type, xs)) <= _PLAIN_NUMBERS:
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if _is_number(x) and _is_number(y)]
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    return Series(key, _as_floats(xs), _as_floats(ys))


def _is_number(value: object) -> bool:
    """A real number that is not a bool (bools are not metrics)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_floats(values: list[object]) -> list[float]:
    """The values as floats (ints that overflow a float become ±inf)."""
    try:
        return list(map(float, values))  # type: ignore[arg-type]
    except OverflowError:
        return [_to_float(v) for v in values]


def _to_float(value: object) -> float:
    """One value as a float, saturating huge integers."""
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def _all_finite(values: list[float]) -> bool:
    """True when no value is NaN or infinite (a C-speed sum in the common case)."""
    total = sum(values)
    if math.isfinite(total):
        return True
    return all(map(math.isfinite, values))
