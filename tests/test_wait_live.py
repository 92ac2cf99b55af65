"""`watcherd wait`'s progress: a live line per job on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cliharness import watcherd
from tests.daemonharness import API_KEY, daemon_env, write_config
from watcherd.model import JobOverview
from watcherd.sim import World, run_in_thread
from watcherd.views.progress import JobView, live_line, plain_line

NOW = 1_779_196_000.0
#: A job that trains 60 steps of 1 s at speed 10 (from about 2 s of wall time on), logs a
#: NaN from step 20, and completes.
JOBS: dict[str, Any] = {
    "seed": 3,
    "speed": 10,
    "jobs": [
        {"pending": 10, "queue": 10, "steps": 60, "seconds_per_step": 1, "eval_steps": 10}
        | {"n_epochs": 2, "diverge_at": 20, "estimate": False, "compress": 1, "upload": 1}
    ],
}


def _job(**changes: Any) -> JobOverview:
    fields: dict[str, Any] = dict.fromkeys(
        ("note", "status_since", "seconds_remaining", "last_poll_at", "last_error", "model"), None
    )
    fields |= {"job_id": "ft-a", "watched": True, "status": "running", "step": 120, "hooks": {}}
    fields |= {"train_loss": 0.5312, "eval_loss": 0.6123, "model_output_name": None}
    return JobOverview(**(fields | changes))


def test_live_line_has_every_part() -> None:
    """Status, step/total from the epoch, bar, percent, ETA with source, losses, alerts."""
    job = _job(eta_at=NOW + 600, eta_source="first_epoch", alerts=("stalled",))
    line = live_line(JobView(job, {"n_epochs": 2}, 0.6), now=NOW, color=False, width=200)
    assert line == (
        "ft-a  running  step 120/400 [######--------------] 30%  ETA 10m (first epoch)"
        "  train 0.5312  eval 0.6123  alerts: stalled"
    )


def test_live_line_fits_the_terminal_and_plain_lines_are_short() -> None:
    """A narrow terminal clips the line; the plain form names status, step and alerts."""
    view = JobView(_job(alerts=("nonfinite",)), {"total_steps": 200})
    assert len(live_line(view, now=NOW, color=False, width=40)) <= 40
    assert plain_line(view) == "ft-a: running, step 120, alerts: nonfinite"


def test_wait_draws_live_lines_on_a_terminal_and_plain_ones_otherwise(tmp_path: Path) -> None:
    """On a pty `wait` redraws in place (ANSI); through a pipe it prints changes as lines."""
    world = World(JOBS)
    (job_id,) = world.job_ids()
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, [])
        master, slave = os.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "watcherd", "wait", job_id, "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=subprocess.PIPE,
                env=daemon_env({"COLUMNS": "160"}),
                timeout=60,
                check=False,
            )
            screen = _drain(master)
        finally:
            os.close(slave)
            os.close(master)
        piped = watcherd(config, "wait", job_id)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" in screen and f"{job_id}  " in screen and "step " in screen
    assert "alerts: nonfinite" in screen
    assert piped.stdout == f"{job_id}: completed\n"  # stdout: the final statuses only
    assert f"{job_id}: completed, step 60" in piped.stderr.splitlines()
    assert "\x1b[" not in piped.stderr


def _drain(fd: int) -> str:
    """Everything written to the pty so far."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
