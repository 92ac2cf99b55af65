"""The jobs file as the running daemon follows it: re-read on change, kept when it goes.

The daemon looks at the file's signature every second and reads it when it changed.
A file that disappears (deleted, or moved away by an editor or a deploy) keeps the
previous job list, logged once as `jobs.file_missing`, until it is back. A file that
cannot be used (a bad line, not UTF-8, not a regular file, too large) also keeps the
previous list; the daemon logs it once per distinct content and error, not on every
look. What the file last gave is saved in the database (`FILE_STATE_PREFIX`), so that a
file missing at start-up keeps its jobs, and only its: not IDs since taken out of
`jobs.ids`, nor anything when there never was a file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import structlog

from watcherd.jobsfile import JobEntry, file_signature, read_jobs_if_present

log = structlog.get_logger("watcherd.daemon")

#: Signatures for "no jobs file configured" and "configured but not there".
NO_FILE: Final = "no jobs file"
MISSING: Final = "jobs file missing"
#: The state key (+ `JobsSource.name()`) of the entries the jobs file last gave.
FILE_STATE_PREFIX: Final = "jobs_file:"

Stored = Callable[[], Awaitable[list[JobEntry]]]


class JobsFileWatch:
    """What was last read from the jobs file, and what was last said about it."""

    __slots__ = ("_applied", "_current", "_entries", "_failure", "_missing_logged")

    def __init__(self) -> None:
        self._applied: object = None  # signature of the content the watched set follows
        self._current: object = None  # signature of the content being read now
        self._entries: list[JobEntry] | None = None  # the file's last good entries
        self._failure: tuple[object, str] | None = None  # the failure last logged
        self._missing_logged = False

    def changed(self, path: Path | None) -> bool:
        """True if the file changed since the watched set last followed it."""
        self._current = NO_FILE if path is None else file_signature(path) or MISSING
        return self._current != self._applied

    def reset(self) -> None:
        """Read the file again at the next look (after a reload)."""
        self._applied = None

    async def entries(self, path: Path | None, stored: Stored) -> list[JobEntry]:
        """The file's entries; while it is missing, the last ones read (at start: `stored`).

        Raises ConfigError when the file cannot be used.
        """
        if path is None:
            return []
        entries = read_jobs_if_present(path)
        if entries is None:
            kept = self._entries if self._entries is not None else await stored()
            if kept and not self._missing_logged:
                self._missing_logged = True
                log.error(
                    "jobs.file_missing",
                    path=str(path),
                    jobs=len(kept),
                    kept="previous job list",
                    hint="restore the file; to watch nothing, leave it empty",
                )
            return kept
        if self._missing_logged:
            self._missing_logged = False
            log.info("jobs.file_restored", path=str(path), jobs=len(entries))
        self._entries = entries
        return entries

    def applied(self) -> None:
        """The watched set now follows the content just read."""
        self._applied, self._failure = self._current, None

    def failed(self, error: Exception) -> bool:
        """Record a failure; True if it is new (another content or error) and worth a log."""
        failure = (self._current, str(error))
        new, self._failure = failure != self._failure, failure
        return new
