"""Turn metric rows into one (steps, values) series per plottable key, quickly.

A 200,000-row history must chart in a few tens of milliseconds, so rows are grouped
by their key set first (train rows share one, eval rows another) and each column is
pulled out with C-level `map` calls rather than a Python loop per value. Grouping goes
by row length: a length group whose rows hold only as many distinct keys as one row
does has a single key set; a mixed one is split row by row.
"""

# No `from __future__ import annotations`: see `watcherd.model` (named tuples).

import math
from collections.abc import Sequence
from itertools import chain, compress
from operator import itemgetter, le, not_
from typing import Any, Final, NamedTuple

from watcherd.model import STEP_KEY, MetricRow

_SKIP_BASES: Final = frozenset({"timestamp", "step", "global_step", "epoch"})
_NUMBER_TYPES: Final = frozenset({int, float})


class Series(NamedTuple):
    """One metric key's points in row order: x is the row's `train/global_step`."""

    key: str
    xs: list[float]
    ys: list[float]
    ascending: bool = False  # xs known to be sorted
    finite: bool = False  # ys known to hold no NaN or inf

    @property
    def non_finite(self) -> list[tuple[float, float]]:
        """(step, value) of every NaN or infinite value, in row order."""
        if self.finite:
            return []
        bad = compress(range(len(self.ys)), map(not_, map(math.isfinite, self.ys)))
        return [(self.xs[i], self.ys[i]) for i in bad]


def is_skipped(key: str) -> bool:
    """True for the keys the `together` CLI never charts (steps, epochs, timestamps)."""
    base = key.rsplit("/", 1)[-1]
    return base in _SKIP_BASES or base.endswith(("_step", "_epoch"))


def collect_series(rows: Sequence[MetricRow]) -> list[Series]:
    """Every plottable numeric key as a series, keys in first-seen order."""
    groups = [g for g in _groups(rows) if STEP_KEY in g[0]]
    owners: dict[str, list[list[MetricRow]]] = {}
    for group in groups:
        for key in group[0]:
            if not is_skipped(key):
                owners.setdefault(key, []).append(group)
    steps = {id(g): _steps(g) for g in groups}  # (column, ascending) per group
    found = (_series_for(key, gs, rows, steps) for key, gs in owners.items())
    return [series for series in found if series.xs]


def _groups(rows: Sequence[MetricRow]) -> list[list[MetricRow]]:
    """Rows split by key set, groups ordered by their first row."""
    lengths = list(map(len, rows))
    found: list[tuple[int, list[MetricRow]]] = []
    for size in dict.fromkeys(lengths):
        members = list(compress(rows, map(size.__eq__, lengths)))
        if len(dict.fromkeys(chain.from_iterable(members))) == size:
            found.append((lengths.index(size), members))
        else:
            found.extend(_split(members, rows))
    found.sort(key=itemgetter(0))
    return [members for _, members in found]


def _split(
    members: list[MetricRow], rows: Sequence[MetricRow]
) -> list[tuple[int, list[MetricRow]]]:
    """A mixed length group split row by row on its exact key tuple."""
    by_keys: dict[tuple[str, ...], list[MetricRow]] = {}
    for row in members:
        by_keys.setdefault(tuple(row), []).append(row)
    positions = {id(row): i for i, row in enumerate(rows)}
    return [(positions[id(group[0])], group) for group in by_keys.values()]


def _steps(group: list[MetricRow]) -> tuple[list[Any], bool]:
    """The group's `train/global_step` column, and whether it is plain and ascending.

    A column holding anything but int and float is never "plain and ascending", so
    the caller's slow path filters it.
    """
    xs = list(map(itemgetter(STEP_KEY), group))
    return xs, _plain(xs) and _ascending(xs)


def _plain(values: list[Any]) -> bool:
    """True when every value is an int or a float (no bool, None or str)."""
    return set(map(type, values)) <= _NUMBER_TYPES


def _ascending(xs: list[Any]) -> bool:
    """True when xs never decrease."""
    return all(map(le, xs, xs[1:]))


def _series_for(
    key: str,
    groups: list[list[MetricRow]],
    rows: Sequence[MetricRow],
    steps: dict[int, tuple[list[Any], bool]],
) -> Series:
    """The series of `key`: one group's columns, or a row-order scan when it spans several."""
    if len(groups) == 1:
        (xs, ascending), ys = steps[id(groups[0])], list(map(itemgetter(key), groups[0]))
    else:
        present = [row for row in rows if key in row and STEP_KEY in row]
        xs, ys = [row[STEP_KEY] for row in present], [row[key] for row in present]
        ascending = _plain(xs) and _ascending(xs)
    if not (ascending or _plain(xs)) or not _plain(ys):
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if _is_number(x) and _is_number(y)]
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        ascending = _ascending(xs)
    if int in set(map(type, ys)):
        ys = _as_floats(ys)
    return Series(key, xs, ys, ascending=ascending, finite=math.isfinite(sum(ys)))


def _is_number(value: object) -> bool:
    """A real number that is not a bool (bools are not metrics)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_floats(values: list[Any]) -> list[float]:
    """The values as floats; integers too large for a float become ±inf."""
    try:
        return list(map(float, values))
    except OverflowError:
        return [_saturate(v) for v in values]


def _saturate(value: Any) -> float:
    """float(value), with integers beyond a float's range as ±inf."""
    if isinstance(value, int) and abs(value) >= 2**1023:
        return math.inf if value > 0 else -math.inf
    return float(value)
