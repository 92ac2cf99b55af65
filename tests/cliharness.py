"""Helpers for CLI end-to-end tests: finished sim jobs recorded once by the real daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.daemonharness import API_KEY, daemon_env, start_daemon, write_config
from tests.simharness import NOW
from watcherd.sim import ManualClock, SimServer, World, run_in_thread

TOGETHER = Path(sys.executable).with_name("together")

#: Jobs that all finished an hour before the sim's NOW, so `run --until-done` ends at once.
FINISHED: dict[str, Any] = {
    "seed": 5,
    "jobs": [
        {"suffix": "sft", "created": "-1h", "steps": 40, "seconds_per_step": 5, "eval_steps": 10},
        {"suffix": "dpo", "method": "dpo", "created": "-1h", "steps": 30, "eval_steps": 5},
        {"suffix": "err", "created": "-1h", "steps": 50, "final": "error", "error_at_step": 20},
        {"suffix": "nan", "created": "-1h", "steps": 30, "eval_steps": 10, "diverge_at": 20},
        {"suffix": "early", "created": "-1h", "queue": 600, "final": "cancelled", "cancel_at": 60},
    ],
}


@dataclass(frozen=True, slots=True)
class Recorded:
    """A sim that keeps serving, and a config whose database the daemon filled from it."""

    sim: SimServer
    world: World
    config: Path
    ids: Mapping[str, str]  # suffix -> job ID

    @property
    def db(self) -> Path:
        """The database file."""
        return self.config.with_name("watcherd.db")


@contextmanager
def recorded(
    folder: Path, scenario: Mapping[str, Any] = FINISHED, *, hooks: str = "", exit_code: int = 0
) -> Iterator[Recorded]:
    """Serve `scenario` on a still clock, run `watcherd run --until-done`, yield the result."""
    world = World(dict(scenario), clock=ManualClock(NOW))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(folder, sim.base_url, world.job_ids(), hooks=hooks)
        code = start_daemon(config, "--until-done").wait(timeout=60)
        assert code == exit_code, (folder / "daemon.log").read_text()[-3000:]
        ids = {str(world.job(j).spec.suffix): j for j in world.job_ids()}
        yield Recorded(sim=sim, world=world, config=config, ids=ids)


def watcherd(
    config: Path | None, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`watcherd ARGS [--config CONFIG]` as a subprocess; never raises on its exit code."""
    argv = [sys.executable, "-m", "watcherd", *args]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=daemon_env(env),
        cwd=cwd or (config.parent if config else None),
        timeout=60,
        check=False,
    )


def together(
    sim: SimServer, home: Path, *args: str, columns: int = 100
) -> subprocess.CompletedProcess[str]:
    """The real `together` CLI against the sim (no whoami needed: a project ID is set)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "TOGETHER_BASE_URL": sim.base_url,
        "TOGETHER_API_KEY": API_KEY,
        "TOGETHER_PROJECT_ID": "proj-test",
        "TOGETHER_TELEMETRY_DISABLED": "1",
        "COLUMNS": str(columns),
    }
    return subprocess.run(
        [str(TOGETHER), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
