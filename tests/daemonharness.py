"""Helpers to run the real daemon as a subprocess against the simulator on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from watcherd.model import MetricRow
from watcherd.sim import World
from watcherd.store import Store

API_KEY = "test-key"


def big_scenario(jobs: int, steps: int, *, seed: int = 1, speed: float = 200.0) -> dict[str, Any]:
    """`jobs` SFT jobs of `steps` steps whose phases last long enough to be seen."""
    return {
        "seed": seed,
        "speed": speed,
        "jobs": [
            {
                "count": jobs,
                "steps": steps,
                "seconds_per_step": 1,
                "eval_steps": 100,
                "pending": 0.5 * speed,
                "queue": 1.0 * speed,
                "compress": 0.5 * speed,
                "upload": 0.5 * speed,
                "final": "completed",
            }
        ],
    }


def write_config(
    folder: Path,
    base_url: str,
    job_ids: Sequence[str],
    *,
    hooks: str = "",
    poll: str = "{interval: 0.3s, min_interval: 0.1s, metrics_interval: 0.3s, max_backoff: 2s}",
    api_extra: str = "",
    max_concurrency: int = 16,
    timeout: str = "5s",
) -> Path:
    """A config for the daemon under test, with the jobs file filled in."""
    (folder / "jobs.txt").write_text("".join(f"{j}\n" for j in job_ids))
    config = folder / "watcherd.yaml"
    config.write_text(
        f"api:\n  base_url: {base_url}\n  api_key_env: WATCHERD_TEST_KEY\n"
        f"  max_rate: 1000\n  max_concurrency: {max_concurrency}\n  timeout: {timeout}\n"
        f"{api_extra}"
        f"store:\n  path: watcherd.db\njobs:\n  file: jobs.txt\npoll: {poll}\n"
        f"log:\n  format: json\n  level: info\n{hooks}"
    )
    return config


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a daemon subprocess: the test key, no systemd variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env["WATCHERD_TEST_KEY"] = API_KEY
    env.update(extra or {})
    return env


def start_daemon(config: Path, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`watcherd run ARGS --config CONFIG` as a subprocess, stderr to `log`."""
    with (log or config.with_name("daemon.log")).open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "watcherd", "run", "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=daemon_env(),
            cwd=config.parent,
        )


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `watcherd` command against `config` and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "watcherd", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=daemon_env(),
        cwd=config.parent,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"watcherd {args} exited {proc.returncode}: {proc.stderr}")
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Send `sig` and wait for the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def stored(db: Path) -> dict[str, Any]:
    """Everything the daemon stored that tests compare: rows, statuses, deliveries."""

    async def read() -> dict[str, Any]:
        async with Store.open(db, writer=False) as store:
            jobs = await store.overview(include_unwatched=True)
            return {
                "metrics": {j.job_id: await store.all_metrics(j.job_id) for j in jobs},
                "transitions": {j.job_id: await store.transitions(j.job_id) for j in jobs},
                "events": {j.job_id: await store.events(j.job_id) for j in jobs},
                "status": {j.job_id: j.status for j in jobs},
                "deliveries": await store.deliveries(),
                "integrity": await store.integrity_check(),
            }

    return anyio.run(read, backend="asyncio")


def row_key(row: MetricRow) -> str:
    """A comparable form of a row that treats NaN as equal to NaN."""
    return repr(sorted(row.items()))


def assert_exact(world: World, metrics: Mapping[str, list[MetricRow]]) -> None:
    """Stored rows equal the simulator's truth for every job: none missing or duplicated."""
    for job_id in world.job_ids():
        truth = [row_key(r) for r in world.truth(job_id)]
        got = [row_key(r) for r in metrics.get(job_id, [])]
        missing = len(set(truth) - set(got))
        duplicated = len(got) - len(set(got))
        assert (missing, duplicated) == (0, 0), f"{job_id}: {missing} missing, {duplicated} dup"
        assert got == truth, f"{job_id}: stored rows differ from the truth"
