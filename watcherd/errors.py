"""Every error watcherd raises, in one tree.

    WatcherdError
    ├── ConfigError               bad configuration (file, line, key path); exit 78
    ├── UsageError                a command-line argument argparse cannot judge; exit 2
    ├── InvalidJobIdError         a job ID that is not `ft-` plus safe characters
    ├── ApiError                  talking to the fine-tuning service
    │   ├── AuthError             401 / 403: the key is wrong or lacks rights
    │   ├── NotFoundError         404: no such job
    │   ├── RateLimitedError      429 (or 503 with Retry-After) past our retries
    │   ├── UnavailableError      5xx, timeouts, resets, stalls past the deadline
    │   ├── ClientRequestError    any other 4xx (e.g. cancelling a finished job)
    │   └── MalformedResponseError  a body we cannot trust (HTML, truncated, oversized)
    ├── StoreError                the local SQLite database
    │   ├── DatabaseLockedError   another daemon owns this database
    │   ├── StoreBusyError        another process held the write lock past a command's patience
    │   ├── StoreUnusableError    disk full, an I/O error, the file deleted or replaced; exit 74
    │   ├── StoreInterruptedError a database call cut short because the daemon is stopping
    │   └── LeaseLostError        a shared database gave this job or delivery to another daemon
    └── HookError                 a hook could not be configured or run

Only `watcherd.cli` turns these into messages and exit codes.
"""

from __future__ import annotations


class WatcherdError(Exception):
    """Base class of every error watcherd raises on purpose."""


class ConfigError(WatcherdError):
    """A configuration problem, located as `file:line: key.path: message`."""

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, key: str = ""
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class UsageError(WatcherdError):
    """A command-line argument that is wrong in a way the parser cannot see."""


class InvalidJobIdError(WatcherdError):
    """A string that is not a valid fine-tuning job ID."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"invalid job ID {job_id!r}: {reason}")


class ApiError(WatcherdError):
    """A request to the fine-tuning service failed."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        self.status = status
        self.url = url
        super().__init__(message)


class AuthError(ApiError):
    """The API key was refused (401) or lacks permission (403)."""


class NotFoundError(ApiError):
    """The service does not know this job (404)."""


class RateLimitedError(ApiError):
    """The service asked us to slow down; `resume_at` is a wall-clock epoch time."""

    def __init__(
        self, message: str, *, resume_at: float, status: int | None = 429, url: str = ""
    ) -> None:
        self.resume_at = resume_at
        super().__init__(message, status=status, url=url)


class UnavailableError(ApiError):
    """The service failed or could not be reached (5xx, timeout, reset, stall)."""


class ClientRequestError(ApiError):
    """A 4xx other than auth, not-found and rate limiting: our request was refused."""


class MalformedResponseError(ApiError):
    """The body cannot be trusted: wrong content type, bad JSON, wrong shape or too large."""

    def __init__(
        self, message: str, *, status: int | None, content_type: str, snippet: str, url: str = ""
    ) -> None:
        self.content_type = content_type
        self.snippet = snippet
        super().__init__(message, status=status, url=url)

    def __str__(self) -> str:
        return (
            f"{self.args[0]} (status {self.status}, content type {self.content_type!r}, "
            f"body starts {self.snippet!r})"
        )


class StoreError(WatcherdError):
    """The local database failed or holds something unexpected."""


class DatabaseLockedError(StoreError):
    """Another watcherd daemon already owns this database."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path}: another watcherd daemon is already running on this database")


class StoreBusyError(StoreError):
    """Another process held the database's write lock longer than a command waits."""


class StoreUnusableError(StoreError):
    """The database cannot be written safely: disk full, an I/O error, the file gone.

    Waiting does not help (or the data would go to a deleted file): the daemon stops.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class StoreInterruptedError(StoreError):
    """A database call cut short because the daemon is stopping; nothing half-written."""


class LeaseLostError(StoreError):
    """This daemon's lease on a job or delivery passed to another: its write is refused."""


class HookError(WatcherdError):
    """A hook could not be configured or started."""
