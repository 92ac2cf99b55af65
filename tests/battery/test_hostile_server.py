"""The real daemon against a hand-written hostile API: it stays up, writes nothing partial,
and delivers the hooks once the server behaves.

The server takes turns: a metric value of 400 digits, a `seconds_remaining` of 400 digits
(on the watched job and on an unwatched job in the listing), a job object nested 600
levels deep, a status `missing` (watcherd's own word), a status full of escape sequences,
and at last an honest `completed`. Each turn lasts until the daemon has asked for the
hostile answer at least twice. (An absurd Retry-After is another battery test's turn.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.battery.sizes import report
from tests.daemonharness import start_daemon, stop, stored, wait_until, write_config
from tests.hostileserver import HostileApi, answer

HOSTILE, OTHER, UNWATCHED = "ft-hostile", "ft-other", "ft-unwatched"
HUGE = 10**400
EVIL = "\u001b[31mEVIL\u001b]0;pwned\u0007\r\nX"
CONTROL = "\u001b\u0007\r"


def job(job_id: str, status: str = "running", **fields: Any) -> dict[str, Any]:
    """A job object."""
    return {"id": job_id, "status": status, "model": "m", **fields}


def rows(*steps: int) -> list[dict[str, Any]]:
    """Honest train rows."""
    return [{"train/global_step": s, "train/loss": 1.0 / s, "timestamp": 10**18 + s} for s in steps]


def nested(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels deep."""
    inner: dict[str, Any] = {}
    for _ in range(depth - 1):
        inner = {"a": inner}
    return inner


def huge_metric(api: HostileApi) -> str:
    """An honest job whose metrics page holds a 400-digit loss."""
    api.set_job(job(HOSTILE))
    api.metrics[HOSTILE] = answer({"metrics": [*rows(1), {**rows(2)[0], "train/loss": HUGE}]})
    return f"/{HOSTILE}/metrics"


def huge_eta(api: HostileApi) -> str:
    """A 400-digit `seconds_remaining`, on the watched job and on an unwatched listed one."""
    eta = {"estimate_available": True, "seconds_remaining": HUGE}
    api.set_job(job(HOSTILE, progress=eta))
    api.set_job(job(UNWATCHED, progress=eta))
    api.metrics[HOSTILE] = answer({"metrics": rows(1, 2)})
    return f"/{HOSTILE}"


def deep_object(api: HostileApi) -> str:
    """A job object nested 600 levels deep (json.loads takes it)."""
    del api.jobs[UNWATCHED]
    api.set_job(job(HOSTILE, "completed", x=nested(600)))
    return f"/{HOSTILE}"


def says_missing(api: HostileApi) -> str:
    """A server status `missing`, which must not fire the hooks of watcherd's verdict."""
    api.set_job(job(HOSTILE, "missing"))
    return f"/{HOSTILE}"


def escapes(api: HostileApi) -> str:
    """A status made of escape sequences: a string, stored verbatim, a live unknown status.

    Once stored, the listing serves it (no retrieve while it holds), so count listings.
    """
    api.set_job(job(HOSTILE, EVIL, model=EVIL))
    return "/fine-tunes"


TURNS: list[Callable[[HostileApi], str]] = [huge_metric, huge_eta, deep_object, says_missing]


def hooks_yaml(log: Path) -> str:
    """A hook on completion and one on `missing`, each appending its delivery id to `log`."""
    code = (
        "import os, sys; sys.stdin.read(); "
        f"open({str(log)!r}, 'a').write(os.environ['WATCHERD_DELIVERY_ID'] + '\\n')"
    )
    command = json.dumps([sys.executable, "-c", code])
    return (
        f"hooks:\n  - name: done\n    command: {command}\n"
        f"  - name: gone\n    on: [missing]\n    command: {command}\n"
    )


def take_turn(api: HostileApi, turn: Callable[[HostileApi], str], proc: Any) -> None:
    """Serve `turn` until the daemon asked for its hostile answer twice more."""
    path = turn(api)
    before = api.requests_to(path)
    assert wait_until(lambda: api.requests_to(path) >= before + 2 or proc.poll() is not None, 30)
    assert proc.poll() is None, f"the daemon exited during {turn.__name__}"


@pytest.mark.timeout(180)
def test_hostile_server_never_kills_the_daemon_nor_writes_partially(tmp_path: Path) -> None:
    """Every hostile turn: daemon alive, nothing stored; escapes stored as a status; hooks once."""
    log = tmp_path / "hooks.log"
    with HostileApi.running() as api:
        api.set_job(job(OTHER))
        api.metrics[OTHER] = answer({"metrics": rows(1)})
        config = write_config(tmp_path, api.base_url, [HOSTILE, OTHER], hooks=hooks_yaml(log))
        proc = start_daemon(config, "--until-done")
        try:
            for turn in TURNS:
                take_turn(api, turn, proc)
            untouched = stored(tmp_path / "watcherd.db")
            take_turn(api, escapes, proc)
            assert wait_until(lambda: stored(tmp_path / "watcherd.db")["status"][HOSTILE], 30)
            api.set_job(job(HOSTILE, "completed"))
            api.set_job(job(OTHER, "completed"))
            api.metrics[HOSTILE] = answer({"metrics": rows(1, 2, 3)})
            code = proc.wait(timeout=60)
        finally:
            stop(proc)
    daemon_log = (tmp_path / "daemon.log").read_text()
    data = stored(tmp_path / "watcherd.db")
    events = [json.loads(line)["event"] for line in daemon_log.splitlines() if line.startswith("{")]
    report(
        "hostile server",
        turns=len(TURNS) + 1,
        requests=sum(api.hits.values()),
        polls_refused=events.count("poll.failed"),
        metrics_refused=events.count("poll.metrics_failed"),
        listings_refused=events.count("poll.list_failed"),
        exit_code=code,
    )
    assert code == 0, daemon_log[-3000:]
    assert "Traceback" not in daemon_log
    # The first turn's job object was honest: its status is recorded, its bad page is not.
    assert untouched["status"][HOSTILE] == "running" and untouched["metrics"][HOSTILE] == []
    assert untouched["deliveries"] == [] or all(d.hook == "done" for d in untouched["deliveries"])
    refused = events.count("poll.failed") + events.count("poll.metrics_failed")
    assert refused >= 2 * len(TURNS) and "poll.list_failed" in events
    assert [t.to_status for t in data["transitions"][HOSTILE]] == ["running", EVIL, "completed"]
    assert data["metrics"][HOSTILE] == rows(1, 2, 3)
    assert sorted(log.read_text().split()) == [
        f"{HOSTILE}:completed:done",
        f"{OTHER}:completed:done",
    ]
    assert all(d.state == "delivered" for d in data["deliveries"])
    assert not any(ch in daemon_log for ch in CONTROL)
