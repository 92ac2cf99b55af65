"""Fault injection: which kinds, how likely, and their knobs.

Spec syntax (the `--faults` option), comma-separated items:

    0.2                         total probability 0.2, spread evenly over every kind
    all=0.2                     the same
    429=0.05,500=0.05,reset=0.02
    0.1,stall=0.05              items add up (stall gets 0.01 + 0.05)
    retry-after=2               Retry-After value in seconds (default 1)
    retry-after-max=3           draw each Retry-After from [retry-after, this] instead
    stall-seconds=5             how long a stall holds the request (default 30)
    drip-seconds=3              how long a slow drip takes to send a body (default 2)
    oversize-bytes=1000000      size of an oversized body (default 50 MiB)
    seed=7                      fault RNG seed (default: the world's seed)

Whether a request fails is drawn afresh for each request (probability: the sum of the
rates). Which kind a failing request gets is dealt in rounds (smooth weighted round
robin, ties broken at random): each kind's share of the faults stays within one fault
of its rate's share, so even a short run meets every kind with a nonzero rate, and the
order within a round is still random.

Kinds:
    429        429 with Retry-After, in turn as seconds, as an HTTP date, as retry-after-ms
    500        500 with the error envelope
    503        503 with the error envelope and Retry-After (seconds)
    stall      no response for stall-seconds, then the connection is closed
    reset      headers and half the body, then a TCP reset
    drip       the whole, valid body, a few bytes at a time over drip-seconds
    truncated  200 application/json whose body stops half-way (Content-Length matches)
    html       200 text/html error page
    html502    502 text/html error page (a proxy's)
    oversized  200 application/json, valid, padded with spaces to oversize-bytes
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

KINDS: Final = (
    "429",
    "500",
    "503",
    "stall",
    "reset",
    "drip",
    "truncated",
    "html",
    "html502",
    "oversized",
)
_PARAMS: Final = {
    "retry-after": "retry_after",
    "retry-after-max": "retry_after_max",
    "stall-seconds": "stall_seconds",
    "drip-seconds": "drip_seconds",
    "oversize-bytes": "oversize_bytes",
    "seed": "seed",
}


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Per-kind probabilities and the knobs of each fault."""

    rates: dict[str, float] = field(default_factory=dict)
    retry_after: float = 1.0
    retry_after_max: float | None = None  # if set, each wait is drawn up to this
    stall_seconds: float = 30.0
    drip_seconds: float = 2.0
    oversize_bytes: int = 50 * 2**20
    seed: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(KINDS)
        if unknown:
            raise FaultSpecError(f"unknown fault kinds: {sorted(unknown)}")
        if any(p < 0 for p in self.rates.values()) or sum(self.rates.values()) > 1 + 1e-9:
            raise FaultSpecError("fault probabilities must be >= 0 and add up to at most 1")

    @property
    def total(self) -> float:
        """The probability that a request gets some fault."""
        return sum(self.rates.values())


class FaultDraw:
    """The fault for each request of one plan: `next()` per request."""

    def __init__(self, spec: FaultSpec, rng: random.Random) -> None:
        total = spec.total
        self._total = total
        self._shares = {k: spec.rates[k] / total for k in KINDS if spec.rates.get(k)}
        self._credit = dict.fromkeys(self._shares, 0.0)
        self._rng = rng

    def next(self) -> str | None:
        """A fault kind for the next request, or None (no fault)."""
        if not self._total or self._rng.random() >= self._total:
            return None
        credit = self._credit
        for kind, share in self._shares.items():
            credit[kind] += share
        top = max(credit.values())
        kind = self._rng.choice([k for k, c in credit.items() if c >= top - 1e-9])
        credit[kind] -= 1.0
        return kind


def parse_faults(text: str | None) -> FaultSpec:
    """A FaultSpec from the `--faults` syntax (see the module docstring)."""
    rates: dict[str, float] = {}
    knobs: dict[str, float | int] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, _, value = item.rpartition("=")
        key = key.strip().lower() or "all"
        try:
            number = float(value)
        except ValueError:
            raise FaultSpecError(f"{item!r}: {value!r} is not a number") from None
        if key == "all":
            for kind in KINDS:
                rates[kind] = rates.get(kind, 0.0) + number / len(KINDS)
        elif key in KINDS:
            rates[key] = rates.get(key, 0.0) + number
        elif key in _PARAMS:
            knobs[_PARAMS[key]] = int(number) if key in ("oversize-bytes", "seed") else number
        else:
            raise FaultSpecError(f"{item!r}: unknown fault kind or setting {key!r}")
    return FaultSpec(rates, **knobs)  # type: ignore[arg-type]
