"""`watcherd cancel JOB_ID [--yes]`: the together CLI's refusal rules, the prompt, the record."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import API_KEY, daemon_env, start_daemon, write_config
from tests.simharness import NOW
from watcherd.sim import ManualClock, SimServer, World, run_in_thread

JOBS = {
    "seed": 4,
    "jobs": [
        {"suffix": "live", "created": "-10m", "steps": 1000, "seconds_per_step": 5},
        {"suffix": "done", "created": "-2h", "steps": 20},
        {"suffix": "live2", "created": "-10m", "steps": 1000, "seconds_per_step": 5},
    ],
}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SimServer, Path, dict[str, str]]]:
    """The sim at NOW, a config with a database the daemon filled once, ids by suffix.

    Shared by the tests below, in order: each counts only the requests it caused.
    """
    world = World(JOBS, clock=ManualClock(NOW))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path_factory.mktemp("cancel"), sim.base_url, world.job_ids())
        assert start_daemon(config, "--once").wait(timeout=60) == 0
        yield sim, config, {str(world.job(j).spec.suffix): j for j in world.job_ids()}


def _posts(sim: SimServer) -> int:
    return sum(r.method == "POST" for r in sim.stats.snapshot())


def test_a_finished_job_is_refused_without_a_call(
    served: tuple[SimServer, Path, dict[str, str]],
) -> None:
    """A completed job: exit 1, the reason on stderr, and no POST /cancel."""
    sim, config, ids = served
    before = _posts(sim)
    done = watcherd(config, "cancel", ids["done"], "--yes")
    assert done.returncode == 1
    assert "is completed" in done.stderr
    assert _posts(sim) == before


def test_off_a_terminal_it_needs_yes(served: tuple[SimServer, Path, dict[str, str]]) -> None:
    """Without a terminal to ask on and without --yes: a usage error, nothing sent."""
    sim, config, ids = served
    before = _posts(sim)
    done = watcherd(config, "cancel", ids["live"])
    assert done.returncode == 2 and "--yes" in done.stderr
    assert _posts(sim) == before


def test_yes_cancels_and_records_who(served: tuple[SimServer, Path, dict[str, str]]) -> None:
    """--yes: one POST, the job is cancel_requested, and `show` says a person cancelled it."""
    sim, config, ids = served
    before = _posts(sim)
    done = watcherd(config, "cancel", ids["live"], "--yes")
    assert done.returncode == 0, done.stderr
    assert "cancel_requested" in done.stdout
    assert _posts(sim) == before + 1
    shown = watcherd(config, "show", ids["live"]).stdout
    assert "cancel requested by user" in shown
    again = watcherd(config, "cancel", ids["live"], "--yes")
    assert again.returncode == 1 and "cancel_requested" in again.stderr


@pytest.mark.parametrize(("answer", "code", "posts"), [("n\n", 1, 0), ("y\n", 0, 1)])
def test_on_a_terminal_it_asks(
    served: tuple[SimServer, Path, dict[str, str]], answer: str, code: int, posts: int
) -> None:
    """On a terminal it asks y/N: `n` leaves the job alone, `y` cancels it."""
    sim, config, ids = served
    before = _posts(sim)
    master, slave = os.openpty()
    os.write(master, answer.encode())
    try:
        done = subprocess.run(
            [sys.executable, "-m", "watcherd", "cancel", ids["live2"], "--config", str(config)],
            stdin=slave,
            capture_output=True,
            text=True,
            env=daemon_env(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert "[y/N]" in done.stdout
    assert (done.returncode, _posts(sim) - before) == (code, posts)
