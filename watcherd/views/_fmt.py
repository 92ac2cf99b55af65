"""Small text helpers shared by the terminal views: ANSI colour, numbers, durations, tables."""

# No `from __future__ import annotations`: see `watcherd.model` (`Column`).
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple

from watcherd.model import is_settled

_CODES: Final = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "magenta": "35",
    "cyan": "36",
    "white": "37",
}
#: What a terminal acts on: C0 controls (ESC included), DEL and C1 (CSI U+009B among
#: them), and the bidi and line-separator characters that reorder or break a line.
_UNSAFE: Final = (
    *range(32),
    *range(127, 160),
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_CONTROL: Final = dict.fromkeys(_UNSAFE, " ")
_UNSAFE_CLASS: Final = "".join(f"\\u{c:04x}" for c in _UNSAFE if c != 0x0A)
#: Our own colour codes (kept when colour is on), or any one unsafe character.
_GUARD: Final = re.compile(f"(\x1b\\[[0-9;]*m)|[{_UNSAFE_CLASS}]")
YEAR: Final = 365 * 86_400


def paint(text: str, style: str | None, color: bool) -> str:
    """`text` wrapped in the ANSI codes of `style` ("bold red"), or bare without colour."""
    if not color or not style or not text:
        return text
    codes = ";".join(_CODES[word] for word in style.split())
    return f"\x1b[{codes}m{text}\x1b[0m"


def status_style(status: str | None) -> str:
    """Green for completed, red for failures and `missing`, yellow for everything live."""
    if status == "completed":
        return "green"
    if is_settled(status):
        return "red"
    if status is None:
        return "dim"
    return "yellow"


def number(value: float | None, spec: str = ".4g") -> str:
    """A metric value for a table cell: `-` when absent, `nan`/`inf` spelled out."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    try:
        return format(value, spec)
    except OverflowError:  # an int too large for a float
        digits = str(abs(int(value)))
        sign = "-" if value < 0 else ""
        return f"{sign}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


def real(value: object) -> float | None:
    """A finite float for a number, else None (NaN, ±inf, overflowing ints, non-numbers)."""
    if type(value) is float:  # the usual case: `x - x` is 0 for a finite float, else NaN
        return value if value - value == 0.0 else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        as_float = float(value)
    except OverflowError:
        return None
    return as_float if math.isfinite(as_float) else None


def duration(seconds: float) -> str:
    """A short human duration: `42s`, `3m 5s`, `2h 5m`, `3d 4h`; `> 1y` beyond a year."""
    if real(seconds) is None:
        return "-"
    if seconds > YEAR:  # an absurd estimate (1e300 s) must not widen a column
        return "> 1y"
    if seconds < 60:
        return f"{max(0, int(seconds))}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def ago(when: float | None, now: float) -> str:
    """`3m ago` for a past moment, `never` for None, `in 5s` for one in the future."""
    if when is None:
        return "never"
    delta = now - when
    if delta < 0:
        return f"in {duration(-delta)}"
    return "just now" if delta < 1 else f"{duration(delta)} ago"


def ago_texts(times: Sequence[float | None], now: float, *, never: str = "never") -> list[str]:
    """`ago` of each time (`never` for None), each whole number of seconds formatted once:
    the jobs of a list were mostly polled together, so their texts repeat."""
    memo: dict[int, str] = {}
    texts = []
    for when in times:
        if when is None:
            texts.append(never)
            continue
        delta = now - when
        if 1 <= delta <= YEAR:  # where `duration` reads only the whole seconds
            key = int(delta)
            text = memo.get(key)
            if text is None:
                text = memo[key] = f"{duration(delta)} ago"
            texts.append(text)
        else:
            texts.append(ago(when, now))
    return texts


def number_texts(values: Sequence[float | None]) -> list[str]:
    """`number` of each value; a finite float (nearly all) without a call of its own."""
    return [format(v, ".4g") if type(v) is float and v - v == 0.0 else number(v) for v in values]


def safe(text: object) -> str:
    """One line of printable text: control characters (ANSI escapes too) made spaces.

    Every string that came from the server (or a file) goes through this before it
    joins a line for the terminal; `--json` output keeps the strings exactly.
    """
    line = str(text)
    # Most cells are plain already: a printable string holds no control, bidi or
    # separator character and no whitespace but the space, so it needs no change
    # unless spaces run together or pad it (about 5x faster for a 1,000-job list).
    if line.isprintable() and "  " not in line and line[:1] != " " and line[-1:] != " ":
        return line
    return " ".join(line.translate(_CONTROL).split())


def terminal_text(text: str, *, color: bool) -> str:
    """The last guard before a terminal: only newlines, and watcherd's own SGR colour
    codes when `color` is on, survive; any other control character becomes a space.

    The views already pass server strings through `safe`; this catches anything a
    renderer forgot, so a hostile status can never retitle the window or move the cursor.
    """
    if "".join(text.split("\n")).isprintable():  # nothing to guard (no escape either)
        return text
    return _GUARD.sub(lambda m: m.group(1) if color and m.group(1) else " ", text)


def clip(text: str, width: int) -> str:
    """`text` made `safe` and cut to `width` characters, with `…` when it was longer."""
    text = safe(text)
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


class Column(NamedTuple):
    """A table column: its header, alignment and how it gives way on a narrow terminal.

    `drop` ranks the columns left out first when the row is too wide (1 goes first,
    None never goes); a `shrink` column is clipped instead, down to its header.
    """

    name: str
    right: bool = False
    drop: int | None = None
    shrink: bool = False


Cell = tuple[str, str | None]  # (plain text, style)
#: A `shrink` column is narrowed to this before any column is dropped.
SHRINK_FLOOR: Final = 16


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *, color: bool, width: int
) -> list[str]:
    """Aligned columns two spaces apart, fitted to `width`; colour never breaks alignment."""
    texts = [[r[i][0] for r in rows] for i in range(len(columns))]
    styles = [[r[i][1] for r in rows] for i in range(len(columns))]
    return grid(columns, texts, styles, color=color, width=width)


def grid(
    columns: Sequence[Column],
    texts: Sequence[list[str]],
    styles: Sequence[Sequence[str | None] | None],
    *,
    color: bool,
    width: int,
) -> list[str]:
    """`table` given column by column: each column's texts and their styles (None for a
    column without any), as a 1,000-job list (10,000 cells) is built."""
    keep = list(range(len(columns)))
    natural = [max(map(len, t), default=0) for t in texts]
    widths = [max(len(c.name), n) for c, n in zip(columns, natural, strict=True)]
    _shrink(columns, widths, keep, width, floor=SHRINK_FLOOR)
    for _, index in sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None):
        if _total(widths, keep) <= width:
            break
        keep.remove(index)
    _shrink(columns, widths, keep, width, floor=0)
    head = [(columns[i].name, "bold") for i in keep]
    lines = [_join(head, [widths[i] for i in keep], [columns[i].right for i in keep], color)]
    specs, body = [], []
    for i in keep:
        fitted, right = _fit(texts[i], widths[i], natural[i]), columns[i].right
        painted = styles[i]
        if color and painted is not None and any(painted):
            pad = widths[i]
            body.append(
                [
                    _pad(paint(t, st, color), pad - len(t), right)
                    for t, st in zip(fitted, painted, strict=True)
                ]
            )
            specs.append("%s")
        else:  # padded by the format below, one call per line rather than one per cell
            body.append(fitted)
            specs.append(f"%{widths[i]}s" if right else f"%-{widths[i]}s")
    line = "  ".join(specs)
    lines.extend((line % cells).rstrip() for cells in zip(*body, strict=True))
    return lines


def _fit(texts: list[str], width: int, longest: int) -> list[str]:
    """One column's texts made `safe` and clipped to `width` (`clip` for a whole column);
    `longest` is the longest text's length (`safe` never lengthens one)."""
    texts = _safe_all(texts)
    if width <= 0:
        return [""] * len(texts)
    if longest > width:
        return [t if len(t) <= width else t[: width - 1] + "…" for t in texts]
    return texts


def _pad(painted: str, pad: int, right: bool) -> str:
    return " " * pad + painted if right else painted + " " * pad


def _safe_all(texts: list[str]) -> list[str]:
    """`safe` of each text; one check over all of them first, since cells are nearly
    always plain (printable, single spaces, none leading or trailing)."""
    if "".join(texts).isprintable():  # printable as a whole: each one is
        joined = "\n".join(texts)  # printable texts hold no newline
        spaced = "  " in joined or " \n" in joined or "\n " in joined
        if not spaced and joined[:1] != " " and joined[-1:] != " ":
            return texts
    return [safe(t) for t in texts]


def _shrink(
    columns: Sequence[Column], widths: list[int], keep: list[int], width: int, floor: int
) -> None:
    """Narrow the kept `shrink` columns (not below `floor` or the header) to fit `width`."""
    for index in keep:
        excess = _total(widths, keep) - width
        if columns[index].shrink and excess > 0:
            least = max(len(columns[index].name), min(floor, widths[index]))
            widths[index] = max(least, widths[index] - excess)


def _total(widths: list[int], keep: list[int]) -> int:
    """Width of a line made of the kept columns."""
    return sum(widths[i] for i in keep) + 2 * (len(keep) - 1)


def _join(cells: Sequence[Cell], widths: list[int], right: list[bool], color: bool) -> str:
    """One table line: each cell clipped, padded (left or right) and painted."""
    parts = []
    for (text, style), cell_width, align_right in zip(cells, widths, right, strict=True):
        shown = clip(text, cell_width)
        pad = " " * (cell_width - len(shown))
        painted = paint(shown, style, color)
        parts.append(pad + painted if align_right else painted + pad)
    return "  ".join(parts).rstrip()


def finite(value: float | None) -> float | None:
    """The number, or None for a missing, NaN or infinite one (JSON has no NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an int too large for a float is still exact JSON
        return value


def iso(when: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC text with microseconds, None stays None."""
    if when is None or not math.isfinite(when):
        return None
    stamp = datetime.fromtimestamp(when, tz=UTC)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
