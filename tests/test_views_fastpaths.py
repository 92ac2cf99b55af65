"""The views' fast paths for plain text give exactly what the full cleaning gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.views._fmt import (
    _CONTROL,
    _GUARD,
    Column,
    _join,
    _safe_all,
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
