"""The shared job list on a database several hosts use: what each host's jobs added.

On PostgreSQL the watched set in the database is the list every daemon polls. A
host's jobs (its jobs file and inline `jobs.ids`, one *source*) add to it: each sync
applies what changed in that source since its last sync (a line added watches the job,
a line removed unwatches it), so a job another host added or `watcherd remove`d is
left as it is. What each source last applied is kept in `state` under SOURCE_PREFIX.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

SOURCE_PREFIX: Final = "jobs_source:"

Entries = Sequence[tuple[str, str | None]]


@dataclass(frozen=True, slots=True)
class Changes:
    """What one source's sync changes in the shared list."""

    watch: list[tuple[str, str | None]]  # new lines, or lines whose note changed
    unwatch: list[str]  # lines gone from the source


def encode(entries: Entries) -> str:
    """A source's entries as stored."""
    return json.dumps([[job_id, note] for job_id, note in entries])


def decode(text: str | None) -> list[tuple[str, str | None]]:
    """Stored entries back; [] for none (a source never synced)."""
    if text is None:
        return []
    return [(str(job_id), None if note is None else str(note)) for job_id, note in json.loads(text)]


def changes(before: Entries, after: Entries) -> Changes:
    """What changed between a source's last applied entries and its current ones."""
    old, new = dict(before), dict(after)
    watch = [(j, n) for j, n in new.items() if j not in old or old[j] != n]
    return Changes(watch, [j for j in old if j not in new])
