"""A throw-away PostgreSQL 15 server for the tests, started from the machine's binaries.

`initdb` refuses to run as root, so under root the server runs as `nobody` (via
`runuser`), in a data directory it owns under a fresh temporary folder; it listens on a
unix socket in that folder only (no TCP port), so each pytest-xdist worker runs a server
of its own. A watchdog process stops the server and removes the folder once the test
process lets go of it, at the end of the session or when the process dies (a crashed
or killed xdist worker leaves no server behind). Where the binaries or psycopg are
missing, `PgServer.running` raises `Unavailable` and the fixtures skip with that reason.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import sys
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


#: Waits for EOF on stdin (the test process closed the pipe or died), then runs the stop
#: command (argv[2:]) and removes the folder (argv[1]).
WATCHDOG: Final = (
    "import shutil, subprocess, sys; sys.stdin.buffer.read();"
    " subprocess.run(sys.argv[2:], capture_output=True, check=False, timeout=60);"
    " shutil.rmtree(sys.argv[1], ignore_errors=True)"
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
            prefix = tuple(_as_server_user(root))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        server = cls(root, root, prefix, bin_dir, itertools.count(1))
        with server._watchdog():
            server._start()
            yield server

    @contextmanager
    def _watchdog(self) -> Iterator[None]:
        """Hold the watchdog's pipe open for the block; on the way out it stops the server
        and removes the folder, and this waits for it to finish."""
        keep, give = os.pipe()  # not inheritable: the tests' own subprocesses never hold it
        stop = self._tool("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        try:
            watchdog = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG, str(self.root), *stop],
                stdin=keep,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the test run does not stop the clean-up
            )
        finally:
            os.close(keep)
        try:
            yield
        finally:
            os.close(give)
            watchdog.wait(timeout=90)

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
