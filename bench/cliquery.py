"""CLI query: `watcherd metrics --resolution 500 --json` and `watcherd list`.

Timed as whole subprocesses (wall, median) and in-process (the command's `main` call
in a fresh process, interpreter start and the `watcherd.cli` import excluded). The
baseline is a python process reading the same rows with the sqlite3 module. `list`
is also measured as whole-process CPU (user + system) against `python -c pass`, the
floor any Python command stands on.

The read commands cache their part of the config (`watcherd.config.cache`); here the
cache lives in the run's temporary folder (XDG_CACHE_HOME), so the first command
fills it and the repeats read it, as a person's repeated `watcherd list` does. The
CPU row's detail also gives the median of runs that start with an empty cache.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import anyio

from bench import ingest, polling
from bench.common import median, run_worker, subprocess_cpu, timed_subprocess
from bench.simclient import ROOT, SimProcess
from bench.table import Row

_SQLITE_METRICS = """
import json, sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = conn.execute("SELECT kind, row_json FROM metrics WHERE job_id = ?"
                    " ORDER BY timestamp, step, id", (sys.argv[2],)).fetchall()
train = [i for i, r in enumerate(rows) if r[0] == "train"]
n, k = len(train), 500
keep = {train[(i * (n - 1) + (k - 1) // 2) // (k - 1)] for i in range(k)} if n > k else set(train)
out = [r[1] for i, r in enumerate(rows) if r[0] == "eval" or i in keep]
sys.stdout.write("[\\n" + ",\\n".join(out) + "\\n]\\n")
"""
_SQLITE_LIST = """
import sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
hooks = conn.execute("SELECT job_id, state, COUNT(*) FROM deliveries GROUP BY job_id, state")
counts = {(j, s): n for j, s, n in hooks}
for row in conn.execute("SELECT * FROM jobs WHERE watched = 1 ORDER BY added_at, job_id"):
    print(" ".join(str(v) for v in row[:12]))
"""


def _config(folder: Path, db: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"store:\n  path: {db}\njobs:\n  file: null\n", encoding="utf-8")
    return path


def setup(params: dict[str, Any]) -> dict[str, Any]:
    """Fill two databases: the long job's history, and `jobs` polled jobs."""
    folder = Path(params["folder"])
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimProcess(ingest.scenario(params["steps"]), Path(tmp)) as sim,
    ):
        job_id = sim.job_ids[0]
        anyio.run(ingest.run_watcherd, sim.base_url, job_id, folder / "m.db", backend="asyncio")
    with (
        tempfile.TemporaryDirectory() as tmp,
        SimProcess(polling.scenario(params["jobs"]), Path(tmp), chunk=16) as sim,
    ):
        anyio.run(polling.run_watcherd, sim, folder / "l.db", 0, backend="asyncio")
    return {"job_id": job_id}


def inproc(params: dict[str, Any]) -> dict[str, Any]:
    """Seconds one `watcherd` command's `main` takes in this process."""
    from watcherd.cli import main

    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        code = main(params["argv"])
    return {"seconds": time.perf_counter() - start, "code": code}


def _measure(argv: list[str], base: list[str], repeats: int) -> dict[str, float]:
    py, times = sys.executable, range(repeats)
    return {
        "subprocess": median([timed_subprocess([py, "-m", "watcherd", *argv]) for _ in times]),
        "inproc": median([run_worker("cli_inproc", {"argv": argv})["seconds"] for _ in times]),
        "sqlite3": median([timed_subprocess([py, "-c", *base]) for _ in times]),
    }


def figure(steps: int, jobs: int, repeats: int) -> list[Row]:
    """Both commands against their sqlite3 readers and the absolute targets.

    watcherd's bytecode is compiled first, as `pip install` does: with
    PYTHONDONTWRITEBYTECODE set, every command would otherwise compile it from source.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "watcherd")], check=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.dict(os.environ, XDG_CACHE_HOME=str(Path(tmp) / "cache")),
    ):
        folder = Path(tmp)
        job_id = run_worker("cli_setup", {"folder": tmp, "steps": steps, "jobs": jobs})["job_id"]
        m_cfg, l_cfg = _config(folder, folder / "m.db", "m"), _config(folder, folder / "l.db", "l")
        metrics = _measure(
            ["metrics", "--config", str(m_cfg), job_id, "--resolution", "500", "--json"],
            [_SQLITE_METRICS, str(folder / "m.db"), job_id],
            repeats,
        )
        listing = _measure(
            ["list", "--config", str(l_cfg)], [_SQLITE_LIST, str(folder / "l.db")], repeats
        )
        cpu = _cpu(["list", "--config", str(l_cfg)], max(5, repeats))
        cpu["list_cache_miss"] = _cold_cpu(["list", "--config", str(l_cfg)], max(5, repeats))
    return [
        Row(f"metrics --resolution 500 --json, {steps:,} steps", metrics["subprocess"],
            metrics["sqlite3"], "< 0.3 s", metrics["subprocess"] < 0.3, "s", metrics),
        Row(f"list, {jobs:,} jobs", listing["subprocess"], listing["sqlite3"], "< 0.5 s",
            listing["subprocess"] < 0.5, "s", listing),
        Row(f"list CPU, {jobs:,} jobs, vs python -c pass", cpu["list"], cpu["pass"], "<= 3x",
            cpu["list"] <= 3 * cpu["pass"], "s", cpu),
    ]  # fmt: skip


def _cpu(argv: list[str], repeats: int) -> dict[str, float]:
    """Median whole-process CPU of `watcherd ARGV` and of `python -c pass`, interleaved."""
    py = sys.executable
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(repeats):
        ours.append(subprocess_cpu([py, "-m", "watcherd", *argv]))
        floor.append(subprocess_cpu([py, "-c", "pass"]))
    return {"list": median(ours), "pass": median(floor)}


def _cold_cpu(argv: list[str], repeats: int) -> float:
    """Median whole-process CPU of `watcherd ARGV` when the config cache is empty."""
    cache = Path(os.environ["XDG_CACHE_HOME"])
    runs = []
    for _ in range(repeats):
        shutil.rmtree(cache, ignore_errors=True)
        runs.append(subprocess_cpu([sys.executable, "-m", "watcherd", *argv]))
    return median(runs)
