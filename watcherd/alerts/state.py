"""What the rules remember about a job between polls, kept in the job's database row.

The state is written in the same transaction as the page of rows that changed it,
so after a crash, a kill or a re-poll the rules resume from exactly what is stored:
a row already evaluated (its step at or below `seen[kind]`) is never counted twice.
Times are epoch seconds: `*_at` on watcherd's clock (when it looked), `run_start`
and `epoch` on the service's (row timestamps, `started_at`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

#: Recent seconds-per-step samples kept for the median.
STEP_SAMPLES: Final = 32


@dataclass(frozen=True, slots=True)
class AlertState:
    """One job's rule memory (see the module docstring); empty for a new job."""

    seen: Mapping[str, int] = field(default_factory=dict)  # kind -> last evaluated step
    latest: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # key -> (step, value)
    bad_since: Mapping[str, int] = field(default_factory=dict)  # key -> first step of its NaN run
    best: Mapping[str, float] = field(default_factory=dict)  # key -> best finite value
    recent: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # key -> last finite
    rises: Mapping[str, int] = field(default_factory=dict)  # eval key -> rises in a row
    step_secs: tuple[float, ...] = ()  # recent seconds per step, from row timestamps
    last_train: tuple[int, int] | None = None  # (step, timestamp ns) of the newest train row
    max_step: int | None = None
    progress_at: float | None = None  # when a fetch first showed `max_step`
    metrics_at: float | None = None  # when metrics were last fetched
    queued_since: float | None = None  # when watcherd first saw it pending or queued
    run_start: float | None = None  # service time training began
    first_epoch: float | None = None  # seconds the first epoch took
    expected: float | None = None  # training seconds expected (frozen: see `eta.expected`)
    epoch: tuple[float, float] | None = None  # (train/epoch, service time) of the newest row
    open: Mapping[str, int] = field(default_factory=dict)  # rule -> open episode
    episodes: Mapping[str, int] = field(default_factory=dict)  # rule -> episodes so far
    cancel: str | None = None  # the rule that decided to cancel this job (once per job)

    def median_step(self) -> float | None:
        """The median seconds per step of the recent samples."""
        if not self.step_secs:
            return None
        ordered = sorted(self.step_secs)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def to_json(self) -> str:
        """Compact JSON (non-finite values written literally, as the store keeps them).

        What `json.dumps(asdict(self))` writes, without `asdict`'s deep copy of every
        mapping and tuple (written with every poll, it was most of the rules' cost).
        """
        plain = {name: _plain(getattr(self, name)) for name in _NAMES}
        return json.dumps(plain, separators=(",", ":"), allow_nan=True)

    @classmethod
    def from_json(cls, text: str | None) -> AlertState:
        """The state stored as `text` (an empty state for None or an unreadable value)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            known = [f.name for f in fields(cls) if f.name in raw]
            return cls(**{name: _restore(name, raw[name]) for name in known})
        except (ValueError, TypeError, KeyError):
            return cls()


_NAMES: Final = tuple(f.name for f in fields(AlertState))
_PAIRS: Final = frozenset({"last_train", "epoch"})


def _plain(value: Any) -> Any:
    """A field's value as `json.dumps` takes it (a mapping as a dict)."""
    return dict(value) if isinstance(value, Mapping) and not isinstance(value, dict) else value


def _restore(name: str, value: Any) -> Any:
    """JSON lists back into the tuples the dataclass holds."""
    if value is None:
        return None
    if name == "latest":
        return {k: (int(v[0]), float(v[1])) for k, v in value.items()}
    if name == "recent":
        return {k: tuple(float(x) for x in v) for k, v in value.items()}
    if name == "step_secs":
        return tuple(float(x) for x in value)
    if name in _PAIRS:
        return (value[0], value[1])
    return value
