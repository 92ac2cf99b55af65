"""The stop-loop battery: SIGTERM at random while jobs finish and hooks run."""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.battery.hookprobe import executions, hook_yaml, running_hooks
from tests.battery.sizes import draw_seed, report, sized
from tests.cliharness import FINISHED
from tests.daemonharness import (
    API_KEY,
    daemon_env,
    start_daemon,
    stored,
    wait_until,
    write_config,
)
from tests.simharness import NOW
from watcherd.model import INTERRUPTED
from watcherd.sim import ManualClock, World, run_in_thread

STOPS = sized(15, 100)
SPEED = sized(30.0, 3.0)
#: The daemon's grace for running hooks is 10 s; a hook's kill takes a little more.
STOP_TIMEOUT = 15.0


def scenario(seed: int) -> dict[str, Any]:
    """Pairs of SFT jobs finishing one after another, so hooks run at most moments."""
    phases = dict.fromkeys(("pending", "queue", "compress", "upload"), 0.25 * SPEED)
    jobs = [
        {"count": 2, "steps": 100 + 60 * i, "seconds_per_step": 1, "eval_steps": 50} | phases
        for i in range(15)
    ]
    return {"seed": seed % 1000, "speed": SPEED, "jobs": jobs}


def started_count(log: Path) -> int:
    """How many daemons have logged `daemon.started` so far."""
    return log.read_text().count('"daemon.started"') if log.exists() else 0


def up(log: Path, before: int, proc: subprocess.Popen[bytes]) -> bool:
    """True once this daemon logged `daemon.started` (or already exited)."""
    return started_count(log) > before or proc.poll() is not None


@pytest.mark.timeout(sized(180, 3600))
def test_stop_loop_never_duplicates_and_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM at random: exit 0 within the stop timeout, no duplicate hook run, no leftover."""
    seed = draw_seed("stop loop")
    rng = random.Random(seed)
    world = World(scenario(seed))
    marker, hook_log, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log", tmp_path / "d.log"
    stops, slowest, leftovers, during_hook = 0, 0.0, 0, 0
    with run_in_thread(world, api_key=API_KEY) as sim:
        hooks = hook_yaml(hook_log, marker, sleep=0.5)
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=hooks)
        while True:
            before = started_count(log)
            proc = start_daemon(config, "--until-done", log=log)
            assert wait_until(functools.partial(up, log, before, proc), 30)
            limit = rng.uniform(0.1, 2.5) if stops < STOPS else sized(120, 900)
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                during_hook += bool(running_hooks(marker))
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=STOP_TIMEOUT + 5)
                slowest = max(slowest, time.monotonic() - sent)
                stops += 1
                assert code == 0, log.read_text()[-3000:]
                leftovers += len(running_hooks(marker))
                continue
            assert code == 0, log.read_text()[-3000:]
            break
    data = stored(tmp_path / "watcherd.db")
    runs = executions(hook_log)
    report(
        "stop loop",
        stops=stops,
        stops_during_hook=during_hook,
        slowest_stop_s=round(slowest, 2),
        deliveries_expected=len(world.job_ids()),
        deliveries_made=len(data["deliveries"]),
        hook_runs=sum(runs.values()),
        duplicated=sum(runs.values()) - len(runs),
        leftover_hooks=leftovers,
    )
    assert stops >= min(STOPS, 5)
    assert slowest <= STOP_TIMEOUT
    assert leftovers == 0
    assert sorted(runs) == sorted(f"{j}:completed:probe" for j in world.job_ids())
    assert max(runs.values()) == 1
    assert all(d.state == "delivered" for d in data["deliveries"])


def stop_during_a_hanging_hook(
    tmp_path: Path, seed: int, *, signals: int
) -> tuple[int | None, float, str, Path]:
    """Run a daemon until its hook hangs, then SIGTERM it `signals` times (the last one timed).

    Returns the exit code, seconds from the last signal to exit, the hook marker and the log.
    """
    world = World({"seed": seed, "jobs": [{"steps": 20, "seconds_per_step": 1, "created": "-1h"}]})
    marker, hook_log, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log", tmp_path / "d.log"
    with run_in_thread(world, api_key=API_KEY) as sim:
        hooks = hook_yaml(hook_log, marker, sleep=120)
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=hooks)
        proc = start_daemon(config, log=log)
        try:
            assert wait_until(lambda: bool(running_hooks(marker, parent=proc.pid)), 30)
            for _ in range(signals - 1):
                proc.send_signal(signal.SIGTERM)
                assert wait_until(lambda: '"daemon.stopping"' in log.read_text(), 5)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=STOP_TIMEOUT + 5)
            return code, time.monotonic() - sent, marker, log
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.timeout(60)
def test_stop_with_a_hanging_hook_kills_it_after_the_grace_and_retries_later(
    tmp_path: Path,
) -> None:
    """A hook outlasting the 10 s grace: exit 0 in time, its group killed, recorded as failed."""
    code, took, marker, log = stop_during_a_hanging_hook(tmp_path, 3, signals=1)
    left = running_hooks(marker)
    (delivery,) = stored(tmp_path / "watcherd.db")["deliveries"]
    report("hanging hook", stop_s=round(took, 2), leftover_hooks=len(left), state=delivery.state)
    assert code == 0, log.read_text()[-3000:]
    assert took <= STOP_TIMEOUT
    assert left == []
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == INTERRUPTED


@pytest.mark.timeout(60)
def test_a_second_sigterm_during_the_grace_stops_at_once(tmp_path: Path) -> None:
    """SIGTERM, then SIGTERM again while a hook hangs: exit 0 within seconds, not the 10 s grace."""
    code, took, marker, log = stop_during_a_hanging_hook(tmp_path, 4, signals=2)
    (delivery,) = stored(tmp_path / "watcherd.db")["deliveries"]
    report("second sigterm", stop_s=round(took, 2), state=delivery.state)
    assert code == 0, log.read_text()[-3000:]
    assert '"daemon.stop_forced"' in log.read_text()
    assert took < 5.0  # the hook's group is killed (SIGTERM, then SIGKILL after its grace)
    assert running_hooks(marker) == []
    assert (delivery.state, delivery.attempts) == ("failed", 1)  # retried on the next start


#: `watcherd run ...` in-process, then whether SIGTERM, SIGINT and SIGHUP are ignored as it exits.
AFTER_THE_LOOP = (
    "import signal, sys; from watcherd.cli import main; code = main(sys.argv[1:]);"
    " print(*(signal.getsignal(s) == signal.SIG_IGN for s in"
    " (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))); sys.exit(code)"
)


@pytest.mark.timeout(60)
def test_a_stop_request_while_the_process_exits_is_ignored(tmp_path: Path) -> None:
    """Found by the stop loop on a loaded machine: a SIGTERM that came after the daemon's
    loop had ended (its handlers gone, the process still exiting) killed it (-15), where
    a stop anywhere else exits 0. Once the loop ends, SIGTERM, SIGINT and SIGHUP are ignored."""
    world = World(FINISHED, clock=ManualClock(NOW))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        done = subprocess.run(
            [sys.executable, "-c", AFTER_THE_LOOP, "run", "--until-done", "--config", str(config)],
            capture_output=True,
            text=True,
            env=daemon_env(),
            cwd=tmp_path,
            timeout=50,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"daemon.all_done"' in done.stderr
    assert done.stdout.split() == ["True", "True", "True"]
