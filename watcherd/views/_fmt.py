"""Small text helpers shared by the terminal views: ANSI colour, numbers, durations, tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from watcherd.model import MISSING, TERMINAL_STATUSES

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
_RED_STATUSES: Final = frozenset({"error", "cancelled", "user_error", MISSING})


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
    if status in _RED_STATUSES:
        return "red"
    if status is None:
        return "dim"
    return "yellow"


def is_final(status: str | None) -> bool:
    """True for the statuses a job never leaves, watcherd's own `missing` included."""
    return status in TERMINAL_STATUSES or status == MISSING


def number(value: float | None, spec: str = ".4g") -> str:
    """A metric value for a table cell: `-` when absent, `nan`/`inf` spelled out."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, spec)


def duration(seconds: float) -> str:
    """A short human duration: `42s`, `3m 5s`, `2h 5m`, `3d 4h`."""
    if not math.isfinite(seconds):
        return "-"
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


def ago(when: float | None, now: float) -> str:
    """`3m ago` for a past moment, `never` for None, `in 5s` for one in the future."""
    if when is None:
        return "never"
    delta = now - when
    if delta < 0:
        return f"in {duration(-delta)}"
    return "just now" if delta < 1 else f"{duration(delta)} ago"


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters with a trailing `…` when it is longer."""
    text = " ".join(text.split())  # no newlines or tabs inside a cell
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[tuple[str, str | None]]],
    *,
    color: bool,
    width: int,
    shrink: int,
) -> list[str]:
    """Aligned columns, two spaces apart; column `shrink` gives way when too wide.

    Each cell is (text, style); padding is computed on the plain text so colour codes
    never break alignment.
    """
    widths = [max([len(h)] + [len(r[i][0]) for r in rows]) for i, h in enumerate(header)]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    if excess > 0:
        widths[shrink] = max(len(header[shrink]), widths[shrink] - excess)
    lines = [_join([(h, "bold") for h in header], widths, color)]
    lines.extend(_join(row, widths, color) for row in rows)
    return lines


def _join(cells: Sequence[tuple[str, str | None]], widths: list[int], color: bool) -> str:
    """One table line: each cell clipped, padded and painted."""
    parts = []
    for (text, style), cell_width in zip(cells, widths, strict=True):
        shown = clip(text, cell_width)
        parts.append(paint(shown, style, color) + " " * (cell_width - len(shown)))
    return "  ".join(parts).rstrip()
