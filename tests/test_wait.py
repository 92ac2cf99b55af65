"""`watcherd wait` as a subprocess against the simulator, with and without the daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import (
    API_KEY,
    daemon_env,
    start_daemon,
    stop,
    wait_until,
    write_config,
)
from watcherd.sim import SimServer, World, run_in_thread

#: Jobs that finish about a second of wall time after the sim starts (speed 40).
LIVE: dict[str, Any] = {
    "seed": 9,
    "speed": 40,
    "jobs": [
        {"suffix": "ok", "pending": 2, "queue": 4, "steps": 30, "seconds_per_step": 1,
         "eval_steps": 10, "compress": 2, "upload": 2},
        {"suffix": "bad", "pending": 2, "queue": 4, "steps": 30, "seconds_per_step": 1,
         "final": "error", "error_at_step": 15},
        {"suffix": "slow", "stay": "queued"},
    ],
}  # fmt: skip
UNKNOWN = "ft-00000000-0000-4000-8000-000000000000"
HOOK = (
    "hooks:\n  - name: note\n    on: [completed, error]\n"
    '    command: ["/bin/sh", "-c", "cat > /dev/null"]\n'
)


@dataclass(frozen=True, slots=True)
class Setup:
    """A fresh sim with live jobs, and a config whose jobs file lists `watched`."""

    sim: SimServer
    ids: dict[str, str]
    config: Path


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """LIVE on a fast clock; the jobs file watches only the `ok` job; one hook."""
    world = World(LIVE)
    ids = {str(world.job(j).spec.suffix): j for j in world.job_ids()}
    with run_in_thread(world, api_key=API_KEY) as sim:
        yield Setup(sim, ids, write_config(tmp_path, sim.base_url, [ids["ok"]], hooks=HOOK))


def _json(config: Path, *args: str) -> Any:
    done = watcherd(config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_daemon_exit_0_when_all_completed(setup: Setup) -> None:
    """No daemon: wait polls the live job itself until completed, exit 0, one line per job."""
    assert not (setup.config.parent / "watcherd.db").exists()
    done = watcherd(setup.config, "wait", setup.ids["ok"])
    assert (done.returncode, done.stdout) == (0, f"{setup.ids['ok']}: completed\n"), done.stderr
    listing = _json(setup.config, "list")
    assert [(j["job_id"], j["status"], j["watched"]) for j in listing] == [
        (setup.ids["ok"], "completed", True)
    ]
    assert json.loads(watcherd(setup.config, "metrics", setup.ids["ok"], "--json").stdout)


def test_without_daemon_exit_1_when_one_failed(setup: Setup) -> None:
    """Waiting on a completed and an errored job exits 1 and prints both statuses."""
    ok, bad = setup.ids["ok"], setup.ids["bad"]
    done = watcherd(setup.config, "wait", ok, bad)
    assert done.returncode == 1, done.stderr
    assert done.stdout == f"{ok}: completed\n{bad}: error\n"


def test_waiting_does_not_watch_or_fire_hooks(setup: Setup) -> None:
    """A job only waited on stays unwatched (list --all shows it) and queues no hook."""
    ok, bad = setup.ids["ok"], setup.ids["bad"]
    assert watcherd(setup.config, "wait", bad).returncode == 1
    assert [(j["job_id"], j["status"]) for j in _json(setup.config, "list")] == [(ok, None)]
    everything = _json(setup.config, "list", "--all")
    assert [(j["job_id"], j["watched"], j["status"]) for j in everything] == [
        (ok, True, None),
        (bad, False, "error"),
    ]
    assert _json(setup.config, "hooks") == []


def test_watched_job_hooks_fire_when_the_daemon_runs_later(setup: Setup) -> None:
    """wait records a watched job's completion; the daemon then delivers its hook once."""
    ok = setup.ids["ok"]
    assert watcherd(setup.config, "wait", ok).returncode == 0
    pending = _json(setup.config, "hooks")
    assert [(d["id"], d["state"]) for d in pending] == [(f"{ok}:completed:note", "pending")]
    assert start_daemon(setup.config, "--until-done").wait(timeout=30) == 0
    delivered = _json(setup.config, "hooks")
    assert [(d["id"], d["state"], d["attempts"]) for d in delivered] == [
        (f"{ok}:completed:note", "delivered", 1)
    ]


def test_with_daemon_reads_the_database(setup: Setup) -> None:
    """With the daemon running, wait needs no API key for the jobs the daemon watches."""
    proc = start_daemon(setup.config)
    try:
        assert wait_until(lambda: (setup.config.parent / "watcherd.db").exists(), 10)
        done = watcherd(setup.config, "wait", setup.ids["ok"], env={"WATCHERD_TEST_KEY": ""})
        assert (done.returncode, done.stdout) == (0, f"{setup.ids['ok']}: completed\n"), done.stderr
    finally:
        assert stop(proc) == 0


def test_with_daemon_polls_the_jobs_it_does_not_watch(setup: Setup) -> None:
    """With the daemon running, wait polls an unwatched job itself; the daemon keeps running."""
    ok, bad = setup.ids["ok"], setup.ids["bad"]
    proc = start_daemon(setup.config)
    try:
        assert wait_until(lambda: (setup.config.parent / "watcherd.db").exists(), 10)
        done = watcherd(setup.config, "wait", ok, bad)
        assert (done.returncode, done.stdout) == (1, f"{ok}: completed\n{bad}: error\n")
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    assert [j["job_id"] for j in _json(setup.config, "list")] == [ok]


def test_timeout_exits_1_with_a_message(setup: Setup) -> None:
    """`--timeout 1s` on a job that stays queued: exit 1 after about a second, says why."""
    slow = setup.ids["slow"]
    started = time.monotonic()
    done = watcherd(setup.config, "wait", slow, "--timeout", "1s")
    assert 1.0 <= time.monotonic() - started < 30
    assert (done.returncode, done.stdout) == (1, f"{slow}: queued\n")
    assert f"gave up after 1s; not finished: {slow}" in done.stderr


def test_unknown_job_turns_missing(setup: Setup) -> None:
    """A job the service does not know: three 404s make it missing, and wait exits 1."""
    done = watcherd(setup.config, "wait", UNKNOWN, "--timeout", "30s")
    assert (done.returncode, done.stdout) == (1, f"{UNKNOWN}: missing\n"), done.stderr


def test_refused_key_exits_1_at_once(setup: Setup) -> None:
    """A key the service refuses ends the wait with exit 1 and a hint, instead of hanging."""
    done = watcherd(setup.config, "wait", setup.ids["slow"], env={"WATCHERD_TEST_KEY": "wrong"})
    assert done.returncode == 1
    assert "API key refused (401)" in done.stderr and "check the key" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job-1"], "invalid job ID 'job-1'"),
        (["{ok}", "--timeout", "0"], "must be a positive duration"),
        (["{ok}", "--timeout", "soon"], "must be a positive duration"),
    ],
)
def test_bad_arguments_exit_2(setup: Setup, args: list[str], message: str) -> None:
    """A malformed ID or timeout: exit 2 naming it, before any request is made."""
    done = watcherd(setup.config, "wait", *[a.format(**setup.ids) for a in args])
    assert done.returncode == 2 and message in done.stderr


POSITIVE = "must be a positive duration (like 90, 90s, 10m, 2h), got"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", f"{POSITIVE} '-5'"),
        ("-5m", f"{POSITIVE} '-5m'"),
        ("soon", f"{POSITIVE} 'soon'"),
        ("1e99", "must be at most 1,000,000,000 seconds (about 31 years), got '1e99'"),
    ],
)
def test_a_bad_timeout_gets_one_clear_message(tmp_path: Path, value: str, message: str) -> None:
    """`--timeout -5` (or -5m, a word, 31 years and more): exit 2 with one plain message."""
    done = watcherd(
        None, "wait", "--timeout", value, "ft-abc", env={"WATCHERD_CONFIG": ""}, cwd=tmp_path
    )
    last = done.stderr.splitlines()[-1]
    assert (done.returncode, last) == (2, f"watcherd wait: error: argument --timeout: {message}")


def test_daemon_can_start_while_wait_polls(setup: Setup) -> None:
    """wait never takes the daemon lock: a daemon starts beside it; Ctrl-C ends wait with 130."""
    argv = [sys.executable, "-m", "watcherd", "wait", setup.ids["slow"]]
    argv += ["--config", str(setup.config)]
    # SIGINT as a terminal delivers it: a runner started in the background (`cmd &` in a
    # script) ignores SIGINT, its children inherit that, and Python then keeps it ignored.
    waiter = subprocess.Popen(
        argv,
        env=daemon_env(),
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log = setup.config.with_name("daemon.log")
    try:
        assert wait_until(lambda: (setup.config.parent / "watcherd.db").exists(), 20)
        proc = start_daemon(setup.config, log=log)
        try:
            assert wait_until(lambda: log.exists() and "daemon.started" in log.read_text(), 20)
            assert waiter.poll() is None
            waiter.send_signal(signal.SIGINT)
            assert waiter.wait(timeout=20) == 130
            assert proc.poll() is None
        finally:
            assert stop(proc) == 0
    finally:
        waiter.kill()
        waiter.communicate()


def test_missing_key_without_daemon_exits_78_and_creates_nothing(setup: Setup) -> None:
    """No daemon and no API key: a configuration error (78) naming the key, no database made."""
    done = watcherd(setup.config, "wait", setup.ids["ok"], env={"WATCHERD_TEST_KEY": ""})
    assert done.returncode == 78 and "api.api_key" in done.stderr
    assert not (setup.config.parent / "watcherd.db").exists()
