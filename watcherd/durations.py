"""Durations as people write them in config: `90`, `90s`, `1.5s`, `500ms`, `10m`, `2h`, `1d`.

A bare number means seconds. Units may be chained (`1h30m`). Everything becomes
float seconds; `format_duration` writes a value back in the largest exact unit.
"""

from __future__ import annotations

import math
import re
from typing import Final

UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUM = r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_PART = re.compile(rf"({_NUM})\s*(ms|s|m|h|d)")
_WHOLE = re.compile(rf"(?:{_NUM}\s*(?:ms|s|m|h|d)\s*)+")
_NUMBER = re.compile(_NUM)
#: Larger values are surely typos (and overflow some timer APIs): about 31 years.
MAX_SECONDS: Final = 1e9
#: `parse_duration`'s message for a value above MAX_SECONDS.
TOO_LONG: Final = "too long"


def parse_duration(value: object) -> float:
    """Seconds for a YAML number or duration string; ValueError if it is neither.

    Negative, infinite and NaN values are refused; zero is allowed (callers that
    need a positive duration check for it).
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError(f"a {type(value).__name__} is not a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("not a finite, non-negative duration")
    if seconds > MAX_SECONDS:
        raise ValueError(TOO_LONG)
    return seconds


def _parse_text(text: str) -> float:
    """Seconds for `90`, `1.5s` or chained units like `1h30m`."""
    if _NUMBER.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"not a duration: {text[:40]!r}")
    return sum(float(number) * UNITS[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Text `parse_duration` reads back to the same value, e.g. `10m`, `90s`, `1.5s`."""
    for unit in ("d", "h", "m", "s"):
        size = UNITS[unit]
        count = seconds / size
        if seconds >= size and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds!r}s"
