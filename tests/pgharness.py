"""A throw-away PostgreSQL 15 server for the tests, started from the machine's binaries.

`initdb` refuses to run as root, so under root the server runs as `nobody` (via
`runuser`), in a data directory it owns under a fresh temporary folder; it listens on a
unix socket in that folder only (no TCP port). Where the binaries or psycopg are
missing, `PgServer.start` raises `Unavailable` and the fixtures skip with that reason.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

BIN_DIRS: Final = (
    os.environ.get("WATCHERD_PG_BIN", ""),
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
)
SUPERUSER: Final = "watcherd"
#: Durability off: a test server loses nothing it needs on a crash of the machine.
FAST: Final = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c listen_addresses=''"
)


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the message says why)."""


def find_bin() -> Path:
    """The folder with initdb, pg_ctl and postgres, or Unavailable."""
    for folder in BIN_DIRS:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise Unavailable("no PostgreSQL binaries (looked in /usr/lib/postgresql/{15,16,17}/bin)")


def _as_server_user(root: Path) -> list[str]:
    """The command prefix that runs the server's tools unprivileged; chowns `root` for it."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    os.chown(root, nobody.pw_uid, nobody.pw_gid)
    return ["runuser", "-u", "nobody", "--"]


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise Unavailable(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


@dataclass(frozen=True, slots=True)
class PgServer:
    """A running server: its socket folder and a counter for fresh database names."""

    root: Path
    socket_dir: Path
    prefix: tuple[str, ...]
    bin: Path
    _names: Iterator[int]

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[PgServer]:
        """initdb, start, yield; stop and remove everything afterwards."""
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise Unavailable("psycopg is missing: pip install 'watcherd[postgres]'") from exc
        bin_dir = find_bin()
        root = Path(tempfile.mkdtemp(prefix="watcherd-pg-"))
        try:
            prefix = _as_server_user(root)
            server = cls(root, root, tuple(prefix), bin_dir, itertools.count(1))
            server._start()
            try:
                yield server
            finally:
                server._stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _tool(self, name: str, *args: str) -> list[str]:
        return [*self.prefix, str(self.bin / name), *args]

    def _start(self) -> None:
        data = self.root / "data"
        _run(
            self._tool("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"),
            "initdb",
        )
        opts = f"{FAST} -k {self.socket_dir}"
        log = str(self.root / "server.log")
        _run(self._tool("pg_ctl", "-D", str(data), "-l", log, "-o", opts, "-w", "start"), "pg_ctl")

    def _stop(self) -> None:
        data = str(self.root / "data")
        subprocess.run(
            self._tool("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"),
            capture_output=True,
            check=False,
            timeout=60,
        )

    def url(self, database: str = "postgres") -> str:
        """A `postgresql://` URL for `database` over the unix socket."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def fresh_database(self) -> str:
        """Create an empty database; return its URL (about 0.3 s: prefer `fresh_schema`)."""
        import psycopg

        name = f"d{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def fresh_schema(self) -> str:
        """Create an empty schema; return a URL whose search_path is that schema only."""
        import psycopg

        name = f"s{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.url()}&options=-csearch_path%3D{name}"
