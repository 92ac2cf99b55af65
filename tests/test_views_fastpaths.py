"""The views' fast paths for plain text give exactly what the full cleaning gives."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.views._fmt import (
    _CONTROL,
    _GUARD,
    YEAR,
    Column,
    _join,
    _safe_all,
    ago,
    ago_texts,
    duration,
    number,
    number_texts,
    real,
    safe,
    table,
    terminal_text,
)

#: Plain letters and spaces, the characters a terminal acts on, other unprintables.
TEXT = st.text(
    st.sampled_from(
        ["a", "Z", "7", " ", " ", "é", "…", "\n", "\t", "\x1b", "\x07", "\x9b", "\u202e",
         "\u2028", "\u00a0", "\u00ad", "\u3000", "[", "m", ";", "3", "1"]
    ),
    max_size=12,
)  # fmt: skip


def _slow_safe(text: str) -> str:
    return " ".join(text.translate(_CONTROL).split())


def _slow_guard(text: str, color: bool) -> str:
    return _GUARD.sub(lambda m: m.group(1) if color and m.group(1) else " ", text)


@settings(max_examples=500, deadline=None)
@given(st.lists(TEXT, max_size=6), st.booleans())
def test_plain_fast_paths_equal_the_full_cleaning(texts: list[str], color: bool) -> None:
    """`safe`, `_safe_all` and `terminal_text` agree with the regex and translate paths."""
    assert [safe(t) for t in texts] == [_slow_safe(t) for t in texts]
    assert _safe_all(texts) == [_slow_safe(t) for t in texts]
    page = "\n".join(texts)
    assert terminal_text(page, color=color) == _slow_guard(page, color)


STYLE = st.sampled_from([None, "red", "bold"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(TEXT, STYLE, TEXT, STYLE), min_size=1, max_size=5), st.booleans())
def test_a_table_built_by_columns_equals_one_built_by_lines(
    rows: list[tuple[str, str | None, str, str | None]], color: bool
) -> None:
    """Built column by column, each line is what `_join` makes of that row's cells."""
    columns = (Column("A"), Column("B", right=True))
    cells = [[(a, sa), (b, sb)] for a, sa, b, sb in rows]
    lines = table(columns, cells, color=color, width=1000)
    widths = [max([1] + [len(r[i][0]) for r in cells]) for i in range(2)]
    assert lines[1:] == [_join(row, widths, [False, True], color) for row in cells]


def _reference_duration(seconds: float) -> str:
    """`duration` as it was written before its fast path (the specification)."""
    if real(seconds) is None:
        return "-"
    if seconds > YEAR:
        return "> 1y"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _reference_real(value: object) -> float | None:
    """`real` without its float fast path."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        as_float = float(value)
    except OverflowError:
        return None
    return as_float if math.isfinite(as_float) else None


#: Seconds around every unit boundary, beyond a year, negative, huge and not numbers.
SECONDS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-120, max_value=2 * YEAR),
    st.sampled_from([0.0, 0.999, 1.0, 59.999, 60.0, 3599.5, 3600.0, 86399.9, 86400.0, YEAR]),
    st.integers(min_value=-(10**20), max_value=10**400),
    st.booleans(),
)


@settings(max_examples=1000, deadline=None)
@given(SECONDS)
def test_duration_and_real_fast_paths_equal_the_plain_ones(seconds: float) -> None:
    """`duration` and `real` give what they gave before their finite-float fast paths."""
    assert duration(seconds) == _reference_duration(seconds)
    assert real(seconds) == _reference_real(seconds)


MOMENTS = st.one_of(st.none(), SECONDS.filter(lambda s: not isinstance(s, bool | int)))


@settings(max_examples=300, deadline=None)
@given(st.lists(MOMENTS, max_size=30), st.floats(min_value=0, max_value=4e9))
def test_column_helpers_equal_a_call_per_cell(times: list[float | None], now: float) -> None:
    """`ago_texts` and `number_texts` give each cell what `ago` and `number` give it."""
    assert ago_texts(times, now) == [ago(t, now) for t in times]
    assert ago_texts(times, now, never="-") == ["-" if t is None else ago(t, now) for t in times]
    assert number_texts(times) == [number(t) for t in times]
