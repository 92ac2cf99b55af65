"""The real daemon when its database fails it: another process's lock, a full disk, deletion."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.history import build
from tests.daemonharness import (
    API_KEY,
    assert_exact,
    big_scenario,
    daemon_env,
    start_daemon,
    stored,
    wait_until,
    write_config,
)
from tests.test_health import FAST_HEARTBEAT, health
from tests.test_ops_notify import Systemd, dead_port
from watcherd.daemon.health import STATUS_KEY
from watcherd.sim import World, run_in_thread

#: Longer than the 10 s that SQLite's busy timeout used to wait before the daemon died.
LOCK_HELD = 12.0


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    """A bound notify socket in tmp_path."""
    fake = Systemd(tmp_path / "n.sock")
    yield fake
    fake.sock.close()


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Daemons a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def rows_stored(db: Path) -> int:
    """Metric rows in the database now (0 before it exists or has tables)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM metrics").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def state_value(db: Path, key: str) -> str | None:
    """One daemon-state value, read straight from the database."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def events(log: Path, name: str) -> list[dict[str, object]]:
    """The JSON log lines of event `name`."""
    return [json.loads(x) for x in log.read_text().splitlines() if f'"{name}"' in x]


@pytest.mark.timeout(120)
def test_another_process_lock_is_waited_out_and_shown(
    tmp_path: Path, systemd: Systemd, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """BEGIN EXCLUSIVE held 12 s mid-ingest: the daemon waits, says so, then stores everything."""
    world = World(big_scenario(2, 2000, speed=200))
    db, log = tmp_path / "watcherd.db", tmp_path / "daemon.log"
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        daemons.append(proc := systemd.start(config, "--until-done"))
        assert wait_until(lambda: rows_stored(db) > 0, 30)
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        held = time.monotonic()
        try:
            systemd.status("database locked by another process", timeout=10)
            code, line = health(config)
            assert code == 1 and "the database is locked by another process" in line, line
            time.sleep(max(0.0, LOCK_HELD - (time.monotonic() - held)))  # the lock's duration
            assert proc.poll() is None
        finally:
            other.execute("COMMIT")
            other.close()
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert_exact(world, stored(db)["metrics"])
    assert len(events(log, "store.locked")) >= 1 and len(events(log, "store.unlocked")) >= 1


@pytest.mark.timeout(60)
def test_a_stop_while_locked_and_reloading_is_prompt(
    tmp_path: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """SIGHUP then SIGTERM while another process holds the lock: exit 0 within seconds."""
    config = write_config(tmp_path, f"http://127.0.0.1:{dead_port()}", ["ft-locked-0001"])
    env = daemon_env(FAST_HEARTBEAT)
    with (tmp_path / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcherd", "run", "--config", str(config)],
            stderr=log,
            env=env,
            cwd=tmp_path,
        )
    daemons.append(proc)
    assert wait_until(lambda: health(config)[0] == 1 and "backing off" in health(config)[1], 20)
    other = sqlite3.connect(tmp_path / "watcherd.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert wait_until(lambda: "locked by another process" in health(config)[1], 10)
        proc.send_signal(signal.SIGHUP)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - stopped < 5
    finally:
        other.execute("COMMIT")
        other.close()


#: Writes past this size fail (EFBIG), as on a full disk; Python ignores SIGXFSZ.
_LIMITED = (
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20));"
    " os.execv(sys.executable, [sys.executable, '-m', 'watcherd', *sys.argv[1:]])"
)


@pytest.mark.timeout(120)
def test_a_full_disk_stops_the_daemon_with_one_line_and_exit_74(tmp_path: Path) -> None:
    """Writes failing past a 1 MiB file size limit: one `daemon.store_failed` line, exit 74."""
    world = World(big_scenario(2, 20_000, speed=2000))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        done = subprocess.run(
            [sys.executable, "-c", _LIMITED, "run", "--config", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(),
            cwd=tmp_path,
            timeout=100,
            check=False,
        )
    assert done.returncode == 74, done.stderr[-3000:]
    failed = [json.loads(x) for x in done.stderr.splitlines() if '"daemon.store_failed"' in x]
    assert len(failed) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert failed[0]["error"] in (
        "database or disk is full (SQLITE_FULL)",
        "disk I/O error (SQLITE_IOERR_WRITE)",
    )
    assert done.stderr.splitlines()[-1].startswith("watcherd run: the database cannot be used:")
    assert stored(tmp_path / "watcherd.db")["integrity"] == "ok"


@pytest.mark.timeout(60)
def test_deleting_the_database_stops_the_daemon_loudly(
    tmp_path: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """`rm watcherd.db*` while running: one `daemon.store_failed` line and exit 74."""
    config = write_config(tmp_path, f"http://127.0.0.1:{dead_port()}", ["ft-deleted-0001"])
    log = tmp_path / "daemon.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcherd", "run", "--config", str(config)],
            stderr=err,
            env=daemon_env(FAST_HEARTBEAT),
            cwd=tmp_path,
        )
    daemons.append(proc)
    assert wait_until(lambda: log.exists() and "daemon.started" in log.read_text(), 20)
    for path in tmp_path.glob("watcherd.db*"):
        path.unlink()
    assert proc.wait(timeout=20) == 74
    (failed,) = events(log, "daemon.store_failed")
    assert "was deleted or replaced while watcherd was running" in str(failed["error"])


@pytest.mark.timeout(60)
def test_an_idle_daemon_with_inline_job_ids_writes_only_its_heartbeat(tmp_path: Path) -> None:
    """With `jobs.ids` and no jobs file, the watched set is synced once, not every second."""
    db = tmp_path / "watcherd.db"
    (job,) = build(db, 1, 10, status="completed")
    config = write_config(tmp_path, f"http://127.0.0.1:{dead_port()}", [])
    text = config.read_text().replace(
        "jobs:\n  file: jobs.txt", f"jobs:\n  file: null\n  ids: [{job}]"
    )
    config.write_text(text)
    proc = start_daemon(config)
    try:
        assert wait_until(lambda: "daemon.started" in (tmp_path / "daemon.log").read_text(), 20)
        # The first heartbeat writes its keys one by one (spread out on a loaded machine):
        # the window starts once its status line is in, the next one is 5 s away.
        assert wait_until(lambda: state_value(db, STATUS_KEY) is not None, 20)
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        versions = set()
        deadline = time.monotonic() + 3.5  # the heartbeat comes every 5 s
        while time.monotonic() < deadline:
            versions.add(reader.execute("PRAGMA data_version").fetchone()[0])
            time.sleep(0.05)
        reader.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert len(versions) <= 2, f"{len(versions) - 1} commits in 3.5 s"
