"""Alert event names, their stable ids, and which hooks subscribe to them.

An alert opens once per (job, rule, episode): its id is `{job}:alert.{rule}:{episode}`
and its hook event `alert.{rule}`; when the condition clears (or the job ends) it
resolves, with the event `alert.{rule}.resolved` and the id `{id}.resolved`. A hook
subscribes with `on: [alert.nonfinite, ...]` or `alert.*`; either brings both the
opening and the resolution. A hook's default `on:` names no alert, so nobody is paged
by a rule they did not ask for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

PREFIX: Final = "alert."
RESOLVED: Final = ".resolved"
ANY: Final = "alert.*"


def alert_event(rule: str, *, resolved: bool = False) -> str:
    """`alert.{rule}`, or `alert.{rule}.resolved`."""
    return f"{PREFIX}{rule}{RESOLVED if resolved else ''}"


def alert_id(job_id: str, rule: str, episode: int, *, resolved: bool = False) -> str:
    """The stable id of an alert episode (or of its resolution)."""
    return f"{job_id}:{PREFIX}{rule}:{episode}{RESOLVED if resolved else ''}"


def is_alert_event(event: str) -> bool:
    """True for `alert.*` events (openings and resolutions)."""
    return event.startswith(PREFIX)


def rule_of(event: str) -> str:
    """The rule an alert event is about."""
    return event[len(PREFIX) :].removesuffix(RESOLVED)


def subscribes(on: Iterable[str], event: str) -> bool:
    """True if a hook with this `on:` list takes `event` (a status or an alert event)."""
    wanted = set(on)
    if event in wanted:
        return True
    if not is_alert_event(event):
        return False
    return ANY in wanted or f"{PREFIX}{rule_of(event)}" in wanted


#: Which alert a hook delivery is about, read back from its id. (Declared with types,
#: not as a class: see `watcherd.store.schema.Migration`.)
AlertRef = NamedTuple("AlertRef", [("rule", str), ("episode", int), ("resolved", bool)])  # noqa: UP014


def parse_delivery(delivery_id: str) -> AlertRef | None:
    """The alert of a delivery id `{job}:alert.{rule}:{episode}[.resolved]:{hook}`, if any."""
    parts = delivery_id.split(":")
    if len(parts) != 4 or not parts[1].startswith(PREFIX):
        return None
    episode, resolved = parts[2].removesuffix(RESOLVED), parts[2].endswith(RESOLVED)
    if not episode.isdigit():
        return None
    return AlertRef(parts[1][len(PREFIX) :], int(episode), resolved)
