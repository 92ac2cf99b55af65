"""The `together` CLI as a real subprocess against the simulator, and `python -m watcherd.sim`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.simharness import small_world
from watcherd.model import MetricFilter, filter_metrics
from watcherd.sim import SimServer, run_in_thread
from watcherd.sim.cli import main

TOGETHER = Path(sys.executable).with_name("together")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    """A simulator on a manual clock, for the module."""
    world, _ = small_world()
    with run_in_thread(world) as server:
        yield server


def _together(sim: SimServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "TOGETHER_BASE_URL": sim.base_url,
        "TOGETHER_API_KEY": "anything",
        "TOGETHER_TELEMETRY_DISABLED": "1",
        "COLUMNS": "100",
    }
    return subprocess.run(
        [str(TOGETHER), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_lists_jobs(sim: SimServer, tmp_path: Path) -> None:
    """`together fine-tuning list` exits 0 and shows every job."""
    done = _together(sim, tmp_path, "fine-tuning", "list")
    assert done.returncode == 0, done.stderr
    assert all(job_id[:20] in done.stdout for job_id in sim.world.job_ids())
    assert any(r.path == "/v3/whoami" for r in sim.stats.snapshot())


def test_cli_draws_metric_charts(sim: SimServer, tmp_path: Path) -> None:
    """`list-metrics ID` draws one chart per metric, with the x-axis."""
    job = sim.world.job_ids()[1]
    done = _together(sim, tmp_path, "fine-tuning", "list-metrics", job)
    assert done.returncode == 0, done.stderr
    for key in ("train/loss", "train/rewards/margins", "eval/loss"):
        assert f"  {key}  (" in done.stdout
    assert "└┬" in done.stdout and "┼" in done.stdout


@pytest.mark.parametrize("extra", [[], ["--global-step-from", "7", "--resolution", "5"]])
def test_cli_json_equals_the_filtered_truth(
    sim: SimServer, tmp_path: Path, extra: list[str]
) -> None:
    """`list-metrics ID --json` equals filter_metrics over the visible rows."""
    job = sim.world.job_ids()[0]
    done = _together(sim, tmp_path, "fine-tuning", "list-metrics", job, "--json", *extra)
    assert done.returncode == 0, done.stderr
    flt = MetricFilter(global_step_from=7, resolution=5) if extra else MetricFilter()
    want = filter_metrics(sim.world.visible_rows(job), flt)
    assert json.loads(done.stdout) == [{k: float(v) for k, v in r.items()} for r in want]


def test_python_m_serves_until_sigterm() -> None:
    """`python -m watcherd.sim --port 0` prints its URL and hint, serves, exits 0 on SIGTERM."""
    argv = [sys.executable, "-m", "watcherd.sim", "--port", "0", "--api-key", "k"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "export TOGETHER_BASE_URL=http://127.0.0.1:" in line
            assert "TOGETHER_API_KEY=k" in line
            url = line.split("TOGETHER_BASE_URL=")[1].split()[0]
            reply = httpx.get(f"{url}/v1/fine-tunes", headers={"Authorization": "Bearer k"})
            assert len(reply.json()["data"]) == 6
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


def test_cli_rejects_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --faults value is a usage error (exit 2) with a message."""
    assert main(["--faults", "teapot=1"]) == 2
    assert "teapot" in capsys.readouterr().err
