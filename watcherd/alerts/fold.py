"""A page's new rows folded into the rules' memory, a column at a time.

A first fetch can bring 200,000 rows. Folding them row by row in Python (a dict per
row, a function call per row, a sorted window per train value) cost as much as storing
them, so the rules read `RowColumns` (each row's kind and step, its timestamp and
epoch, each watched key's value) and fold each column with a few C-level passes
(`map`, `compress`, `accumulate`). The result is exactly what the row-by-row fold gives
(`tests/test_alert_fold.py` checks it): a row counts only past the last evaluated step
of its kind, a key's latest value is its last number, its window the last `window`
finite values, its best the lowest running median (train keys) or value (eval keys).
Unusual columns (rows out of order, a NaN, a non-number) take a loop per row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress, islice, repeat
from operator import eq, ge, gt, is_, is_not, lt, not_, sub
from typing import Any, Final

from watcherd.alerts.rules import is_eval
from watcherd.alerts.state import STEP_SAMPLES, AlertState
from watcherd.config.alerting import AlertsConfig
from watcherd.model import EPOCH_KEY, TIMESTAMP_KEY, MetricRow, row_kind, row_step
from watcherd.stamps import UNITS, stamp_ns

NS: Final = 1e9
#: Keys whose explicit `null` counts as NaN (JSON.stringify writes NaN as null); a
#: missing key does not.
LOSS_KEYS: Final = frozenset({"train/loss", "eval/loss"})
#: Every this many full windows a running median is worked out, to bound the lowest.
_STRIDE: Final = 64


def watched_keys(config: AlertsConfig) -> tuple[str, ...]:
    """The keys whose values the rules read: `nonfinite`'s, then `diverging`'s, once each."""
    return tuple(dict.fromkeys((*config.nonfinite.keys, *config.diverging.keys)))


@dataclass(frozen=True, slots=True)
class RowColumns:
    """Rows for the rules, column by column: each row's kind and step, and its raw
    timestamp, `train/epoch` and watched keys' values (None when absent)."""

    kinds: Sequence[str] = ()
    steps: Sequence[int] = ()
    stamps: Sequence[Any] = ()
    epochs: Sequence[Any] = ()
    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, rows: Iterable[MetricRow], keys: Sequence[str]) -> RowColumns:
        """Columns of decoded rows; a row without a kind or a usable step is left out."""
        kept: list[MetricRow] = []
        kinds: list[str] = []
        steps: list[int] = []
        for row in rows:
            try:
                kind, step = row_kind(row), row_step(row)
            except (KeyError, ValueError):
                continue
            kept.append(row)
            kinds.append(kind)
            steps.append(step)
        return cls(
            kinds,
            steps,
            [row.get(TIMESTAMP_KEY) for row in kept],
            [row.get(EPOCH_KEY) for row in kept],
            {key: [value_of(row, key) for row in kept] for key in keys},
        )

    def select(self, rows: Sequence[int]) -> RowColumns:
        """The columns of the rows at these indices."""
        return RowColumns(
            [self.kinds[i] for i in rows],
            [self.steps[i] for i in rows],
            [self.stamps[i] for i in rows],
            [self.epochs[i] for i in rows],
            {key: [column[i] for i in rows] for key, column in self.values.items()},
        )


def value_of(row: MetricRow, key: str) -> Any:
    """The row's value for a watched key as the rules read it: None when absent, NaN
    for an explicit null loss (`LOSS_KEYS`)."""
    value = row.get(key)
    if value is None and key in LOSS_KEYS and key in row:
        return math.nan
    return value


@dataclass(frozen=True, slots=True)
class Folded:
    """The state's changed fields, whether `max_step` grew, the newest train row's
    timestamp (ns) and, when this page shows it, the service time epoch 1 ended."""

    updates: dict[str, Any]
    grew: bool
    last_stamp: int | None
    epoch_one: float | None


def fold(config: AlertsConfig, state: AlertState, cols: RowColumns) -> Folded:
    """The rows past each kind's last evaluated step, folded into `state`'s fields."""
    train = list(map(eq, cols.kinds, repeat("train")))  # else eval (`model.row_kind`)
    keep, seen = _new_rows(cols.kinds, cols.steps, train, state.seen)
    if keep is not None:
        cols, train = cols.select(keep), [train[i] for i in keep]
    top = max(cols.steps, default=None)
    grew = top is not None and (state.max_step is None or top > state.max_step)
    updates = _fold_values(config, state, cols)
    updates.update(seen=seen, max_step=top if grew else state.max_step)
    steps, stamps, epochs = _train_rows(cols, train)
    epoch_one = None
    if steps:
        timing, epoch_one = _timing(state, steps, stamps, epochs)
        updates |= timing
    return Folded(updates, grew, stamps[-1] if stamps else None, epoch_one)


def _new_rows(
    kinds: Sequence[str], steps: Sequence[int], train: list[bool], seen: Mapping[str, int]
) -> tuple[list[int] | None, dict[str, int]]:
    """The rows whose step is past the last one of their kind (None: all of them), and
    each kind's last step after them (`train` tells each row's kind apart)."""
    after = dict(seen)
    masks = {"train": train, "eval": list(map(not_, train))}
    first = {kind: mask.index(True) for kind, mask in masks.items() if True in mask}
    for kind in sorted(first, key=first.__getitem__):  # in order of appearance, as rows set
        mine = list(compress(steps, masks[kind])) if False in masks[kind] else list(steps)
        if mine[0] <= after.get(kind, -1) or not all(map(lt, mine, islice(mine, 1, None))):
            break  # out of order: row by row below
        after[kind] = mine[-1]
    else:
        return None, after
    after, keep = dict(seen), []
    for i, (kind, step) in enumerate(zip(kinds, steps, strict=True)):
        if step > after.get(kind, -1):
            after[kind] = step
            keep.append(i)
    return keep, after


def _fold_values(config: AlertsConfig, state: AlertState, cols: RowColumns) -> dict[str, Any]:
    """Each watched key's new values into its latest value, NaN run, window, best, rises."""
    latest, best = dict(state.latest), dict(state.best)
    recent, rises = dict(state.recent), dict(state.rises)
    bad_since = dict(state.bad_since)
    width = config.diverging.window
    for key in watched_keys(config):
        column = cols.values.get(key, ())
        present = list(map(is_not, column, repeat(None)))
        if not any(present):
            continue
        found, steps = column, cols.steps
        if not all(present):
            found, steps = list(compress(column, present)), list(compress(steps, present))
        mem = _Memory(key, width, latest, best, recent, rises)
        values = _plain_floats(found)
        if values is not None:
            mem.fold_plain(steps[-1], values)
            bad_since.pop(key, None)
        else:
            pairs = list(zip(steps, found, strict=True))
            mem.fold_each(pairs)
            _fold_bad_run(key, latest.get(key), pairs, bad_since)
    return {
        "latest": latest,
        "bad_since": bad_since,
        "best": best,
        "recent": recent,
        "rises": rises,
    }


def _plain_floats(found: Sequence[Any]) -> list[float] | None:
    """The values as floats when each is a finite int or float (no bool), else None."""
    types = set(map(type, found))
    if not types <= {int, float}:
        return None
    try:
        values = list(found) if types == {float} else list(map(float, found))
    except OverflowError:  # an integer beyond a float's range
        return None
    return values if all(map(math.isfinite, values)) else None


@dataclass(slots=True)
class _Memory:
    """One key's part of the state's mappings, changed in place."""

    key: str
    width: int
    latest: dict[str, tuple[int, float]]
    best: dict[str, float]
    recent: dict[str, tuple[float, ...]]
    rises: dict[str, int]

    def fold_plain(self, last_step: int, values: list[float]) -> None:
        """Finite values (at least one): the same as `fold_each`, column-wise."""
        key = self.key
        prior = list(self.recent.get(key, ()))
        width = max(self.width, len(prior))  # a longer stored window keeps its length
        series = prior + values
        self.latest[key] = (last_step, values[-1])
        if is_eval(key):
            chain = series[len(prior) - 1 :] if prior else values
            self.rises[key] = _rises(list(map(gt, chain[1:], chain)), self.rises.get(key, 0))
            low = min(values)
        else:
            self.rises[key] = self.rises.get(key, 0)
            low = _least_median(series, len(prior), width)
        best = self.best.get(key)
        self.best[key] = low if best is None or low < best else best
        self.recent[key] = tuple(series[-width:])

    def fold_each(self, found: list[tuple[int, Any]]) -> None:
        """Values one by one (any JSON value; non-numbers are skipped)."""
        key = self.key
        window = list(self.recent.get(key, ()))
        low, count = self.best.get(key), self.rises.get(key, 0)
        evaluating = is_eval(key)
        for step, raw in found:
            value = number_or_nan(raw)
            if value is None:
                continue
            self.latest[key] = (step, value)
            if not math.isfinite(value):
                continue
            if evaluating and window:
                count = count + 1 if value > window[-1] else 0
            window.append(value)
            if len(window) > self.width:
                del window[0]
            smoothed = value if evaluating else median(window)
            low = smoothed if low is None or smoothed < low else low
        self.recent[key] = tuple(window)
        self.rises[key] = count
        if low is not None:
            self.best[key] = low


def _rises(ups: list[bool], count: int) -> int:
    """Rises in a row after these comparisons, starting from `count`."""
    if False not in ups:
        return count + len(ups)
    return ups[::-1].index(False)


def _least_median(series: list[float], start: int, width: int) -> float:
    """The lowest median of the windows of `width` values ending at each index from
    `start` on (shorter windows at the head of the series)."""
    full = max(start, width - 1)  # the first index whose window is full
    low = min((median(series[: j + 1]) for j in range(start, min(full, len(series)))), default=None)
    ends = range(full, len(series))
    if not ends:
        assert low is not None
        return low
    sampled = [median(series[j - width + 1 : j + 1]) for j in (*ends[::_STRIDE], ends[-1])]
    bound = min(sampled) if low is None else min(low, *sampled)
    # A window's median is below `bound` only if (width + 1) // 2 of its values are.
    below = list(accumulate(map(lt, series, repeat(bound)), initial=0))
    ahead = islice(below, full + 1 - width, len(series) + 1 - width)
    counts = map(sub, islice(below, full + 1, None), ahead)
    lower = compress(ends, map(ge, counts, repeat((width + 1) // 2)))
    return min(itertools.chain((bound,), (median(series[j - width + 1 : j + 1]) for j in lower)))


def median(window: Sequence[float]) -> float:
    """The median of a short window."""
    ordered = sorted(window)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def number_or_nan(value: Any) -> float | None:
    """A JSON number as a float, NaN and ±Infinity included; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond a float's range (copysign would overflow too)
        return math.inf if value > 0 else -math.inf


def _fold_bad_run(
    key: str, latest: tuple[int, float] | None, found: list[tuple[int, Any]], since: dict[str, int]
) -> None:
    """Where the key's current run of non-finite values began (gone once a finite one comes)."""
    if latest is None or math.isfinite(latest[1]):
        since.pop(key, None)
        return
    run_start = latest[0]
    for step, raw in reversed(found):
        value = number_or_nan(raw)
        if value is None:
            continue
        if math.isfinite(value):
            break
        run_start = step
    else:
        run_start = since.get(key, run_start)  # the run began before this page
    since[key] = run_start


def _train_rows(cols: RowColumns, train: list[bool]) -> tuple[list[int], list[int], list[Any]]:
    """Steps, timestamps (in nanoseconds) and epochs of the train rows whose timestamp is
    an integer."""
    stamps = list(compress(cols.stamps, train))
    steps = list(compress(cols.steps, train))
    epochs = list(compress(cols.epochs, train))
    if not set(map(type, stamps)) <= {int}:
        whole = list(map(is_, map(type, stamps), repeat(int)))
        steps, stamps, epochs = (list(compress(c, whole)) for c in (steps, stamps, epochs))
    return steps, _in_ns(stamps), epochs


def _in_ns(stamps: list[int]) -> list[int]:
    """The timestamps in nanoseconds, whatever unit each came in (`stamps.stamp_ns`)."""
    if not stamps or min(stamps) >= _NS_FROM:  # nanoseconds already, every one
        return stamps
    return list(map(stamp_ns, stamps))


#: Timestamps from this magnitude on are in nanoseconds (`stamps.UNITS`).
_NS_FROM: Final = max(below for below, _ in UNITS)


def _timing(
    state: AlertState, steps: list[int], stamps: list[int], epochs: list[Any]
) -> tuple[dict[str, Any], float | None]:
    """Seconds per step (from the newest train rows), the run start, the newest epoch;
    and when epoch 1 ended, if this page shows it and the state does not know yet."""
    tail = list(zip(steps[-(STEP_SAMPLES + 1) :], stamps[-(STEP_SAMPLES + 1) :], strict=True))
    if state.last_train is not None and len(tail) == len(steps):
        tail = [state.last_train, *tail]
    samples = list(state.step_secs)
    for (s0, t0), (s1, t1) in itertools.pairwise(tail):
        if s1 > s0 and t1 > t0:
            samples.append((t1 - t0) / NS / (s1 - s0))
    out: dict[str, Any] = {
        "step_secs": tuple(samples[-STEP_SAMPLES:]),
        "last_train": (steps[-1], stamps[-1]),
    }
    found = _epochs(epochs, stamps, first=state.first_epoch is None)
    epoch_one = None
    if found is not None:
        out["epoch"], epoch_one = found
    if state.run_start is None:
        out["run_start"] = stamps[0] / NS  # replaced by `started_at` if given
    return out, epoch_one


def _epochs(
    epochs: list[Any], stamps: list[int], *, first: bool
) -> tuple[tuple[float, float], float | None] | None:
    """(the newest finite epoch, its time) and, with `first`, when epoch 1 was reached."""
    if epochs and _finite_numbers(epochs):
        first = first and max(epochs) >= 1
        at = next(compress(range(len(epochs)), map(ge, epochs, repeat(1))), None) if first else None
        return (float(epochs[-1]), stamps[-1] / NS), None if at is None else stamps[at] / NS
    pairs = [(number_or_nan(e), t / NS) for e, t in zip(epochs, stamps, strict=True)]
    finite = [(e, t) for e, t in pairs if e is not None and math.isfinite(e)]
    if not finite:
        return None
    return finite[-1], next((t for e, t in finite if e >= 1), None) if first else None


def _finite_numbers(values: list[Any]) -> bool:
    """True when each value is an int or a float (no bool) and finite as a float."""
    try:
        return set(map(type, values)) <= {int, float} and all(map(math.isfinite, values))
    except OverflowError:  # an integer beyond a float's range
        return False
