"""The watched set a config names: the jobs file's IDs, then the inline `jobs.ids`."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from watcherd.config.reading import ReadConfig
from watcherd.config.schema import Config
from watcherd.jobsfile import JobEntry, read_jobs
from watcherd.model import validate_job_id


@dataclass(frozen=True, slots=True)
class JobsSource:
    """Where the watched set comes from: the jobs file and the config's inline IDs."""

    config: Config | ReadConfig

    def entries(self) -> list[tuple[str, str | None]]:
        """(job_id, note) pairs, the file's first, inline IDs after; duplicates dropped."""
        file = self.config.jobs.file
        return self.merge(read_jobs(file) if file is not None else [])

    def merge(self, from_file: Iterable[JobEntry]) -> list[tuple[str, str | None]]:
        """(job_id, note) pairs of `from_file` (as read earlier), then the inline IDs."""
        found: dict[str, str | None] = {}
        for entry in from_file:
            found.setdefault(entry.job_id, entry.note)
        for job_id in self.config.jobs.ids:
            found.setdefault(validate_job_id(job_id), None)
        return list(found.items())

    def name(self) -> str:
        """This source in a list several hosts share: the host and the config file (or,
        without one, the jobs file), e.g. `web-1:/etc/watcherd/watcherd.yaml`."""
        where = self.config.source or self.config.jobs.file
        return f"{socket.gethostname()}:{os.path.abspath(where) if where else '-'}"
