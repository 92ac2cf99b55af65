"""The column-wise fold of new rows into the rules' memory equals the row-by-row fold.

`reference_absorb` is the fold as it was written before it worked on columns: one
Python pass per row, a sorted window per train value. Pages are generated with rows
out of order and repeated, NaN and ±Infinity, bools, strings, huge integers, float
timestamps, missing epochs, and states carried over from earlier pages.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from watcherd.alerts.episodes import Observation, absorb
from watcherd.alerts.fold import RowColumns, median, number_or_nan, watched_keys
from watcherd.alerts.state import STEP_SAMPLES, AlertState
from watcherd.config.alerting import AlertsConfig, DivergingRule, NonfiniteRule
from watcherd.model import EPOCH_KEY, STEP_KEY, TIMESTAMP_KEY, row_kind, row_step
from watcherd.stamps import stamp_ns

NS = 1e9


def reference_absorb(config: AlertsConfig, state: AlertState, rows: list[dict[str, Any]]) -> Any:
    """The fields the row-by-row fold changed, its `grew`, newest train stamp, epoch 1."""
    keys = watched_keys(config)
    seen, max_step, grew = dict(state.seen), state.max_step, False
    values: dict[str, list[tuple[int, Any]]] = {key: [] for key in keys}
    train: list[tuple[int, int, Any]] = []
    for row in rows:
        try:
            kind, step = row_kind(row), row_step(row)
        except (KeyError, ValueError):
            continue
        if step <= seen.get(kind, -1):
            continue
        seen[kind] = step
        if max_step is None or step > max_step:
            max_step, grew = step, True
        for key in keys:
            value = row.get(key)
            if value is None and key in ("train/loss", "eval/loss") and key in row:
                value = math.nan  # an explicit null loss
            if value is not None:
                values[key].append((step, value))
        if kind == "train" and type(row.get(TIMESTAMP_KEY)) is int:
            train.append((step, stamp_ns(row[TIMESTAMP_KEY]), row.get(EPOCH_KEY)))
    out = {"seen": seen, "max_step": max_step, **_reference_values(config, state, values)}
    timing, epoch_one = _reference_timing(state, train)
    return out | timing, grew, (train[-1][1] if train else None), epoch_one


def _reference_values(
    config: AlertsConfig, state: AlertState, values: dict[str, list[tuple[int, Any]]]
) -> dict[str, Any]:
    latest, best = dict(state.latest), dict(state.best)
    recent, rises, since = dict(state.recent), dict(state.rises), dict(state.bad_since)
    for key, found in values.items():
        if not found:
            continue
        window, low, count = list(recent.get(key, ())), best.get(key), rises.get(key, 0)
        for step, raw in found:
            value = number_or_nan(raw)
            if value is None:
                continue
            latest[key] = (step, value)
            if not math.isfinite(value):
                continue
            if key.startswith("eval/") and window:
                count = count + 1 if value > window[-1] else 0
            window.append(value)
            if len(window) > config.diverging.window:
                del window[0]
            smoothed = value if key.startswith("eval/") else median(window)
            low = smoothed if low is None or smoothed < low else low
        recent[key], rises[key] = tuple(window), count
        if low is not None:
            best[key] = low
        _reference_bad_run(key, state.latest.get(key), found, since)
    return {"latest": latest, "best": best, "recent": recent, "rises": rises, "bad_since": since}


def _reference_bad_run(
    key: str, prior: tuple[int, float] | None, found: list[tuple[int, Any]], since: dict[str, int]
) -> None:
    """Row by row: a non-finite value opens a run unless one is open, a finite one ends it."""
    start = None if prior is None or math.isfinite(prior[1]) else since.get(key, prior[0])
    for step, raw in found:
        value = number_or_nan(raw)
        if value is None:
            continue
        if math.isfinite(value):
            start = None
        elif start is None:
            start = step
    if start is None:
        since.pop(key, None)
    else:
        since[key] = start


def _reference_timing(
    state: AlertState, train: list[tuple[int, int, Any]]
) -> tuple[dict[str, Any], float | None]:
    if not train:
        return {}, None
    tail = train[-(STEP_SAMPLES + 1) :]
    if state.last_train is not None and len(tail) == len(train):
        tail = [(state.last_train[0], state.last_train[1], None), *tail]
    samples = list(state.step_secs)
    for (s0, t0, _), (s1, t1, _) in itertools.pairwise(tail):
        if s1 > s0 and t1 > t0:
            samples.append((t1 - t0) / NS / (s1 - s0))
    out: dict[str, Any] = {
        "step_secs": tuple(samples[-STEP_SAMPLES:]),
        "last_train": (train[-1][0], train[-1][1]),
    }
    pairs = [(number_or_nan(e), t / NS) for _, t, e in train]
    epochs = [(e, t) for e, t in pairs if e is not None and math.isfinite(e)]
    epoch_one = None
    if epochs:
        out["epoch"] = epochs[-1]
        if state.first_epoch is None:
            epoch_one = next((t for e, t in epochs if e >= 1), None)
    if state.run_start is None:
        out["run_start"] = train[0][1] / NS
    return out, epoch_one


# -- generated pages ---------------------------------------------------------------

_NUMBERS = st.one_of(
    st.floats(min_value=0.0, max_value=10.0),
    st.integers(min_value=0, max_value=9),
    st.sampled_from([0.5, 1.0, 1.5, 2.0]),  # ties in running medians
)
_ODD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, "x", None, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
)
#: Timestamps in nanoseconds, and (a server stamping otherwise) seconds or milliseconds.
_UNIT = st.sampled_from([10**9, 1, 1000])


@st.composite
def pages(draw: st.DrawFn, *, odd: bool) -> list[dict[str, Any]]:
    """Rows of one page: mostly in order; with `odd`, any value anywhere."""
    value = st.one_of(_NUMBERS, _ODD) if odd else _NUMBERS
    count = draw(st.integers(min_value=0, max_value=40))
    start = draw(st.integers(min_value=0, max_value=40))
    shuffled = odd and draw(st.booleans())
    unit = draw(_UNIT)
    rows = []
    for i in range(count):
        step = draw(st.integers(min_value=0, max_value=80)) if shuffled else start + i
        row: dict[str, Any] = {STEP_KEY: step, TIMESTAMP_KEY: (19 * 10**8 + step) * unit}
        if draw(st.integers(min_value=0, max_value=3)) > 0:
            row["train/loss"] = draw(value)
            row[EPOCH_KEY] = draw(value) if odd else step / 25
        else:
            row["eval/loss"] = draw(value)
        if odd and draw(st.integers(min_value=0, max_value=9)) == 0:
            row[TIMESTAMP_KEY] = draw(st.sampled_from([1.5e18, None, "t"]))
        if odd and draw(st.integers(min_value=0, max_value=19)) == 0:
            del row[STEP_KEY]
        if not odd:
            row = {k: v for k, v in row.items() if v is not None}
        rows.append(row)  # odd rows keep their nulls, as the service sends them
    return rows


_CONFIGS = st.builds(
    lambda window, keys: AlertsConfig(
        nonfinite=NonfiniteRule(keys=keys), diverging=DivergingRule(window=window)
    ),
    st.integers(min_value=1, max_value=7),
    st.sampled_from([("train/loss", "eval/loss"), ("eval/loss",), ("train/loss", "train/epoch")]),
)


def _check(config: AlertsConfig, state: AlertState, rows: list[dict[str, Any]]) -> AlertState:
    """One page through `absorb` and the reference: the same state, field for field."""
    now = 2e9
    fields, grew, stamp, epoch_one = reference_absorb(config, state, rows)
    if grew:
        logged = stamp / NS if stamp is not None else now
        floor = state.metrics_at if state.metrics_at is not None else now
        fields["progress_at"] = max(min(logged, now), min(floor, now))
    expected = replace(state, **fields)
    if expected.run_start is not None and state.first_epoch is None and epoch_one is not None:
        expected = replace(expected, first_epoch=max(0.0, epoch_one - expected.run_start))
    got = absorb(config, state, Observation(now, "completed", None, rows))
    assert got.to_json() == expected.to_json()
    return got


@settings(max_examples=150, deadline=None)
@given(_CONFIGS, st.lists(pages(odd=False), min_size=1, max_size=4))
def test_ordered_finite_pages_fold_as_row_by_row(config: AlertsConfig, pages: Any) -> None:
    """Ordered pages of plain numbers (the column-wise path) fold as row by row."""
    state = AlertState()
    for rows in pages:
        state = _check(config, state, rows)


@settings(max_examples=150, deadline=None)
@given(_CONFIGS, st.lists(pages(odd=True), min_size=1, max_size=4))
def test_odd_pages_fold_as_row_by_row(config: AlertsConfig, pages: Any) -> None:
    """Pages out of order, with NaN, bools, strings, huge integers, fold as row by row."""
    state = AlertState()
    for rows in pages:
        state = _check(config, state, rows)


@settings(max_examples=100, deadline=None)
@given(st.lists(_NUMBERS, min_size=1, max_size=300), st.integers(min_value=1, max_value=6))
def test_a_stored_window_longer_than_the_configured_one_keeps_its_length(
    values: list[float], window: int
) -> None:
    """A state stored under a longer `window` folds as row by row does (keeps its length)."""
    config = AlertsConfig(diverging=DivergingRule(window=window))
    state = AlertState(recent={"train/loss": (3.0,) * (window + 2)}, best={"train/loss": 2.5})
    rows = [{STEP_KEY: i, TIMESTAMP_KEY: i, "train/loss": v} for i, v in enumerate(values)]
    _check(config, state, rows)


def test_the_lowest_running_median_of_a_long_page_is_exact() -> None:
    """A 20,000-row page (many strides, one deep dip) finds the same best as row by row."""
    config = AlertsConfig()
    losses = [2.0 + math.sin(i / 50) + (i % 7) / 10 for i in range(20_000)]
    losses[12_345:12_348] = [0.25, 0.5, 0.125]  # three low values: one window's median is low
    rows = [{STEP_KEY: i, TIMESTAMP_KEY: i, "train/loss": v} for i, v in enumerate(losses)]
    got = _check(config, AlertState(), rows)
    assert got.best["train/loss"] == 0.5


def test_columns_of_rows_leave_out_rows_without_a_step() -> None:
    """`RowColumns.of_rows` drops what the rules cannot place (no usable step)."""
    rows = [{STEP_KEY: 1, "train/loss": 1.0}, {"train/loss": 2.0}, {STEP_KEY: math.nan}]
    cols = RowColumns.of_rows(rows, ("train/loss",))
    assert (list(cols.steps), list(cols.values["train/loss"])) == ([1], [1.0])


def test_a_non_finite_run_carried_over_pages_keeps_the_step_it_began() -> None:
    """NaN from step 2 on, over three pages (the last all NaN): the run still began at 2."""
    config = AlertsConfig()
    state = AlertState()
    for steps, values in (
        ((0, 1, 2), (1.0, 0.9, math.nan)),
        ((3, 4), (math.nan,) * 2),
        ((5,), (math.inf,)),
    ):
        rows = [
            {STEP_KEY: s, TIMESTAMP_KEY: s * 10**9, "train/loss": v}
            for s, v in zip(steps, values, strict=True)
        ]
        state = _check(config, state, rows)
    assert state.bad_since == {"train/loss": 2}
