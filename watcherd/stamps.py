"""Metric row timestamps as time: the unit read from the number's magnitude.

Together documents `timestamp` only by example: nanoseconds since the epoch. A server
stamping rows in seconds, milliseconds or microseconds is read by magnitude instead
(README, "How it polls"): below 1e11 it is seconds, below 1e14 milliseconds,
below 1e17 microseconds, else nanoseconds. Each unit so covers 1973 to 5138. Only the
reading changes: rows are stored and shown with the number exactly as received.
"""

from __future__ import annotations

from typing import Final

#: (magnitude below which, nanoseconds per unit), smallest unit last; else 1 (ns).
UNITS: Final = ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3))


def ns_per_unit(stamp: int) -> int:
    """Nanoseconds per unit of a row timestamp, inferred from its magnitude."""
    size = abs(stamp)
    for below, scale in UNITS:
        if size < below:
            return scale
    return 1


def stamp_ns(stamp: int) -> int:
    """A row timestamp in nanoseconds since the epoch, whatever unit it came in."""
    return stamp * ns_per_unit(stamp)


def stamp_seconds(stamp: int) -> float:
    """A row timestamp in seconds since the epoch, whatever unit it came in."""
    return stamp / (1_000_000_000 // ns_per_unit(stamp))


def ns_in_unit_of(ns: int, stamp: int, *, round_up: bool) -> int:
    """Nanoseconds `ns` in the unit of the row timestamp `stamp`, rounded down or up (a
    time bound compared with rows stamped like `stamp`)."""
    scale = ns_per_unit(stamp)
    return -(-ns // scale) if round_up else ns // scale


def unit_sql(expr: str) -> str:
    """`ns_per_unit` as an SQL expression over the integer expression `expr` (SQLite and
    PostgreSQL alike; no abs(), which overflows on the smallest 64-bit integer)."""
    arms = (f"WHEN {expr} > -{below} AND {expr} < {below} THEN {scale}" for below, scale in UNITS)
    return f"CASE {' '.join(arms)} ELSE 1 END"
