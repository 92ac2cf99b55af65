"""The running daemon and its jobs file: gone, broken, reloaded (real subprocess, real sim)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import API_KEY, big_scenario, start_daemon, stop, wait_until, write_config
from watcherd.sim import SimServer, World, run_in_thread


@dataclass(frozen=True, slots=True)
class Running:
    """A daemon watching `first` of two long-running sim jobs."""

    sim: SimServer
    proc: subprocess.Popen[bytes]
    config: Path
    jobs: Path
    log: Path
    first: str
    second: str

    def requests_for(self, job_id: str) -> int:
        """How many requests the sim saw for this job so far."""
        return sum(job_id in r.path for r in self.sim.stats.snapshot())

    def events(self, name: str) -> list[dict[str, object]]:
        """The daemon's log lines for event `name`."""
        lines = [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]
        return [line for line in lines if line.get("event") == name]


@contextmanager
def running(folder: Path, hooks: str = "") -> Iterator[Running]:
    """The daemon on `first` of two jobs that stay live; stopped (exit 0) on the way out."""
    scenario = big_scenario(2, 100000, seed=21)
    for phase in ("pending", "queue"):
        scenario["jobs"][0][phase] = 600
    world = World(scenario)
    first, second = world.job_ids()
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(folder, sim.base_url, [first], hooks=hooks)
        log = folder / "daemon.log"
        proc = start_daemon(config, log=log)
        try:
            assert wait_until(lambda: "daemon.started" in log.read_text(), 15)
            # The poller starts once the signal handlers are in place: a SIGHUP is handled now.
            assert wait_until(lambda: sim.stats.total > 0, 15)
            yield Running(sim, proc, config, folder / "jobs.txt", log, first, second)
        finally:
            assert stop(proc) == 0, log.read_text()[-3000:]


def _still_polled(daemon: Running, job_id: str) -> bool:
    """True once the sim has seen three more requests for the job."""
    before = daemon.requests_for(job_id)
    return wait_until(lambda: daemon.requests_for(job_id) >= before + 3, 10)


@pytest.mark.timeout(90)
def test_a_jobs_file_that_goes_away_keeps_the_job_list(tmp_path: Path) -> None:
    """Moving the jobs file away keeps its jobs polled (logged once); its return is followed."""
    with running(tmp_path) as daemon:
        daemon.jobs.rename(tmp_path / "jobs.txt.moved")
        assert wait_until(lambda: daemon.events("jobs.file_missing"), 10)
        assert _still_polled(daemon, daemon.first)
        daemon.jobs.write_text(f"{daemon.first}\n{daemon.second}\n")
        assert wait_until(lambda: daemon.requests_for(daemon.second) > 0, 10)
        assert daemon.proc.poll() is None
    missing = daemon.events("jobs.file_missing")
    assert len(missing) == 1 and missing[0]["kept"] == "previous job list"
    assert missing[0]["jobs"] == 1 and missing[0]["path"] == str(daemon.jobs)
    assert len(daemon.events("jobs.file_restored")) == 1


@pytest.mark.timeout(90)
def test_a_broken_jobs_file_is_logged_once_per_content(tmp_path: Path) -> None:
    """A bad jobs file is logged once (not every second), again when it changes; a reload lives."""
    with running(tmp_path) as daemon:
        daemon.jobs.write_text("not-a-job\n")
        assert wait_until(lambda: daemon.events("jobs.file_invalid"), 10)
        time.sleep(3 * 1.0)  # the daemon looks at the file every second
        assert len(daemon.events("jobs.file_invalid")) == 1
        daemon.jobs.write_text(f"{daemon.first}\nft-$bad\n")
        assert wait_until(lambda: len(daemon.events("jobs.file_invalid")) == 2, 10)
        daemon.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: daemon.events("config.reloaded"), 10)
        assert _still_polled(daemon, daemon.first)
        daemon.jobs.write_text(f"{daemon.second}\n")
        assert wait_until(lambda: daemon.requests_for(daemon.second) > 0, 10)
    errors = [e["error"] for e in daemon.events("jobs.file_invalid")]
    assert len(errors) == 2, errors
    assert f"{daemon.jobs}:1: " in str(errors[0]) and f"{daemon.jobs}:2: " in str(errors[1])


@pytest.mark.timeout(90)
def test_a_reload_refuses_a_loose_webhook_secret(tmp_path: Path) -> None:
    """SIGHUP after a webhook secret_file turned 0644: reload refused with file:line, still up."""
    secret = tmp_path / "wh.secret"
    secret.write_text("whsec-value\n")
    secret.chmod(0o600)
    hooks = "hooks:\n  - name: w\n    webhook:\n      url: http://127.0.0.1:9/\n"
    hooks += f"      secret_file: {secret}\n"
    with running(tmp_path, hooks) as daemon:
        secret.chmod(0o644)
        daemon.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: daemon.events("config.reload_failed"), 10)
        assert _still_polled(daemon, daemon.first)
    failed = daemon.events("config.reload_failed")[0]
    assert f"{daemon.config}:" in str(failed["error"]) and "chmod 600" in str(failed["error"])
    assert failed["key"] == "hooks[0].webhook.secret_file"


@pytest.mark.timeout(90)
def test_a_jobs_file_missing_at_start_keeps_the_stored_job_list(tmp_path: Path) -> None:
    """`run --once` after the jobs file went away still polls the stored jobs, and says why."""
    world = World(big_scenario(1, 100000, seed=22))
    (job_id,) = world.job_ids()
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, [job_id])
        assert start_daemon(config, "--once").wait(timeout=30) == 0
        (tmp_path / "jobs.txt").unlink()
        before = sum(job_id in r.path for r in sim.stats.snapshot())
        log = tmp_path / "second.log"
        assert start_daemon(config, "--once", log=log).wait(timeout=30) == 0
        assert sum(job_id in r.path for r in sim.stats.snapshot()) > before
    assert '"event": "jobs.file_missing"' in log.read_text()


@pytest.mark.timeout(90)
def test_inline_ids_removed_without_a_jobs_file_are_unwatched(tmp_path: Path) -> None:
    """With only `jobs.ids` (no jobs file ever), an ID taken out of them is unwatched
    at the next start, and no `jobs.file_missing` is logged."""
    world = World(big_scenario(2, 100000, seed=23))
    first, second = world.job_ids()
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, [])
        (tmp_path / "jobs.txt").unlink()
        text = config.read_text()
        config.write_text(text.replace("  file: jobs.txt\n", f"  ids: [{first}, {second}]\n"))
        assert start_daemon(config, "--once").wait(timeout=30) == 0
        config.write_text(text.replace("  file: jobs.txt\n", f"  ids: [{first}]\n"))
        log = tmp_path / "second.log"
        assert start_daemon(config, "--once", log=log).wait(timeout=30) == 0
    listed = watcherd(config, "list", "--json")
    assert [job["job_id"] for job in json.loads(listed.stdout)] == [first]
    assert "jobs.file_missing" not in log.read_text()
