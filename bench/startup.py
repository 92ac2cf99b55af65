"""Daemon start-up with a large stored history: seconds from exec to READY=1.

The history (5 jobs of 200,000 steps: about a million rows) is written straight into
the database (`bench.history`). `watcherd run` starts as a subprocess with
NOTIFY_SOCKET on a socket here and the API on a port where nothing listens (READY
never waits on the API); the figure is the median time to READY=1. The baseline is
the same start with the same jobs and no rows, in the same run. Also measured: the
first start of a database from before the stored cursor (the migration fills it), and
`run --until-done` over finished jobs, which must exit at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import median
from bench.history import build
from bench.simclient import ROOT
from bench.table import Row

JOBS = 5
#: READY within this, whatever the history.
TARGET = 2.0


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(folder: Path, db: Path, ids: list[str]) -> Path:
    path = folder / f"{db.stem}.yaml"
    path.write_text(
        f"api:\n  base_url: http://127.0.0.1:{_dead_port()}\n  api_key_env: BENCH_KEY\n"
        f"store:\n  path: {db}\njobs:\n  file: null\n  ids: [{', '.join(ids)}]\n"
        "log:\n  format: json\n  level: warning\n",
        encoding="utf-8",
    )
    return path


def _env(notify: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env["BENCH_KEY"] = "bench-key"
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    return env


def _argv(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "watcherd", "run", "--config", str(config), *extra]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_to_ready(config: Path, folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds from starting `watcherd run` to READY=1; then it is stopped.

    CPU seconds are the daemon's own, so they hold on a busy machine too.
    """
    address = folder / "notify.sock"
    address.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(600)
        started = time.perf_counter()
        proc = subprocess.Popen(_argv(config), cwd=ROOT, env=_env(address))
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            ready = time.perf_counter() - started
            cpu = _cpu_seconds(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=600)
    return ready, cpu


def time_until_done(config: Path) -> float:
    """Seconds `watcherd run --until-done` takes when every job is already finished."""
    started = time.perf_counter()
    subprocess.run(_argv(config, "--until-done"), cwd=ROOT, env=_env(None), check=True)
    return time.perf_counter() - started


def figure(steps: int, repeats: int) -> list[Row]:
    """Start-up with and without the history; the first start after an upgrade; until-done."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        empty, full, old, done = (folder / f"{n}.db" for n in ("empty", "full", "old", "done"))
        ids = build(empty, JOBS, 0)
        build(full, JOBS, steps)
        build(old, JOBS, steps, version=1)
        build(done, JOBS, steps, status="completed")
        base = [time_to_ready(_config(folder, empty, ids), folder) for _ in range(repeats)]
        warm = [time_to_ready(_config(folder, full, ids), folder) for _ in range(repeats)]
        upgrade = []
        for n in range(repeats):
            copy = Path(shutil.copy(old, folder / f"old{n}.db"))
            upgrade.append(time_to_ready(_config(folder, copy, ids), folder))
        until = median([time_until_done(_config(folder, done, ids)) for _ in range(repeats)])
    rows = f"{JOBS * (steps + steps // 100):,}"
    return [
        _row(f"daemon start (READY), {rows} rows", warm, base, steps),
        _row(f"first start after upgrade, {rows} rows", upgrade, base, steps),
        Row(f"run --until-done, finished, {rows} rows", until, None, f"< {TARGET:g} s",
            until < TARGET, "s", {"jobs": JOBS, "steps": steps}),
    ]  # fmt: skip


def _row(
    name: str, runs: list[tuple[float, float]], base: list[tuple[float, float]], steps: int
) -> Row:
    """Median wall time to READY against the empty database's; CPU seconds in the detail."""
    wall = median([w for w, _ in runs])
    detail = {
        "jobs": JOBS,
        "steps": steps,
        "cpu_to_ready": median([c for _, c in runs]),
        "baseline_cpu_to_ready": median([c for _, c in base]),
    }
    return Row(
        name, wall, median([w for w, _ in base]), f"< {TARGET:g} s", wall < TARGET, "s", detail
    )
