"""The part of the configuration the read commands need: where the store is, the
watched set's sources and the poll timings `health` judges by.

Named tuples, not dataclasses: `watcherd list` builds them from the cache (see
`watcherd.config.cache`) without importing `dataclasses`, PyYAML or the schema, and
`Config` holds the very same types, so every store function takes either.
"""

# No `from __future__ import annotations`: see `watcherd.model` (a `NamedTuple` with
# annotations as text compiles each of them).
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from watcherd.errors import ConfigError
from watcherd.textfile import present, read_regular

if TYPE_CHECKING:
    from watcherd.config.schema import Config
    from watcherd.config.secrets import SecretRef
else:  # `NamedTuple` only needs a type here; as text it would compile it (costly)
    SecretRef = object

#: Used when neither --config nor $WATCHERD_CONFIG names a file, if it exists.
SYSTEM_CONFIG_PATH: Final = Path("/etc/watcherd/config.yaml")
#: A config file is a few kilobytes; anything past this is not one.
MAX_CONFIG_BYTES: Final = 1 << 20


class StoreConfig(NamedTuple):
    """`store:`: the SQLite database file, or a shared PostgreSQL database (`url`)."""

    path: Path = Path("watcherd.db")
    #: `postgresql://user@host:port/db`: several daemons share it (`path` is then unused).
    url: str | None = None
    password: SecretRef | None = None  # the PostgreSQL password, never inline
    lease: float = 30.0  # seconds a daemon's claim on a job or delivery lasts unrenewed

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        """Which store this configures."""
        return "sqlite" if self.url is None else "postgresql"


class JobsConfig(NamedTuple):
    """`jobs:`: the watched job IDs, from a file (re-read on change) and inline."""

    file: Path | None = Path("jobs.txt")
    ids: tuple[str, ...] = ()


class PollConfig(NamedTuple):
    """`poll:`: how often jobs are looked at, in seconds."""

    interval: float = 60.0  # status of live jobs
    min_interval: float = 10.0  # never sooner, whatever the ETA says
    metrics_interval: float = 300.0  # new metric rows of running jobs
    events_interval: float = 3600.0  # the event log of a training job (not below metrics_)
    max_backoff: float = 600.0  # cap of a failing job's backoff


class ReadConfig(NamedTuple):
    """What `list`, `show`, `metrics`, `hooks`, `health` and the other read commands use
    of a config; `source` is the file it came from, if any."""

    store: StoreConfig
    jobs: JobsConfig
    poll: PollConfig
    source: Path | None

    @classmethod
    def of(cls, config: "Config") -> "ReadConfig":
        """The read commands' part of a whole config."""
        return cls(config.store, config.jobs, config.poll, config.source)


def read_config_file(path: Path) -> bytes:
    """The bytes of the config file at `path`; ConfigError if it cannot be read.

    It must be a regular file (a FIFO would block, `/dev/zero` never ends) of at most
    MAX_CONFIG_BYTES.
    """
    try:
        data, _ = read_regular(path, limit=MAX_CONFIG_BYTES, what="config file")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=str(path)) from None
    return data


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$WATCHERD_CONFIG`, else /etc/watcherd/config.yaml if it exists, else ./watcherd.yaml."""
    env = os.environ if environ is None else environ
    if env.get("WATCHERD_CONFIG"):
        return Path(env["WATCHERD_CONFIG"])
    if present(SYSTEM_CONFIG_PATH):
        return SYSTEM_CONFIG_PATH
    return Path("watcherd.yaml")
