"""Command hooks run as real subprocesses: exit codes, timeouts, output cap, groups, env."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from watcherd.config import CommandHook, HookConfig
from watcherd.errors import HookError
from watcherd.hooks.command import OutputTail, hook_environment, run_command

pytestmark = pytest.mark.anyio

PAYLOAD: dict[str, Any] = {
    "type": "job.completed",
    "delivery_id": "ft-abc:completed:deploy",
    "job_id": "ft-abc",
    "status": "completed",
    "previous_status": "running",
    "job": {"id": "ft-abc", "model_output_name": "me/model"},
}
GRACE = 0.3


def python_hook(script: str, *, timeout: float = 5.0, cap: int = 4096, **kw: Any) -> HookConfig:
    """A command hook running `script` with this interpreter."""
    command = CommandHook(argv=(sys.executable, "-c", script), **kw)
    return HookConfig(name="h", timeout=timeout, output_cap_bytes=cap, action=command)


async def run(hook: HookConfig, payload: Mapping[str, Any] = PAYLOAD, **kw: Any) -> Any:
    """Run one attempt with a short kill grace."""
    kw.setdefault("environ", {"PATH": os.environ["PATH"]})
    assert isinstance(hook.action, CommandHook)
    return await run_command(
        hook,
        hook.action,
        payload,
        delivery_id="ft-abc:completed:h",
        attempt=1,
        kill_grace=GRACE,
        **kw,
    )


def alive(pid: int) -> bool:
    """True if `pid` is a live process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_in(path: Path) -> list[int]:
    """The pids written so far into `path`, one a line."""
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def names_in(folder: Path) -> list[str]:
    """The sorted names of the files in `folder`."""
    return sorted(p.name for p in folder.iterdir())


async def read_pids(path: Path, count: int = 1) -> list[int]:
    """Wait until the hook has written `count` pids, one a line, into `path`."""
    with anyio.fail_after(5):
        # The pids come from another process: nothing to wait on but the file.
        while len(pids := pids_in(path)) < count:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    return pids


async def test_success_reads_payload_on_stdin() -> None:
    """Exit 0 is delivered, and the program gets the payload as JSON on stdin."""
    script = "import json,sys; print(json.load(sys.stdin)['job']['model_output_name'])"
    outcome = await run(python_hook(script))
    assert outcome.state == "delivered"
    assert outcome.output_tail == "me/model\n"


async def test_failure_retries_with_tail() -> None:
    """A non-zero exit is retried, with the exit status and the output's tail recorded."""
    script = "import sys; print('out'); print('boom', file=sys.stderr); sys.exit(3)"
    outcome = await run(python_hook(script))
    assert outcome.state == "retry"
    assert outcome.error == "exit status 3"
    assert outcome.output_tail is not None
    assert "out" in outcome.output_tail and "boom" in outcome.output_tail


@pytest.mark.parametrize(
    ("code", "state", "error"),
    [
        (75, "retry", "exit status 75 (temporary failure)"),
        (65, "give_up", "exit status 65 (give up)"),
    ],
)
async def test_special_exit_codes(code: int, state: str, error: str) -> None:
    """EX_TEMPFAIL (75) retries; EX_DATAERR (65) gives up at once."""
    outcome = await run(python_hook(f"raise SystemExit({code})"))
    assert (outcome.state, outcome.error) == (state, error)


async def test_missing_program_retries() -> None:
    """A program that cannot be started is a failed attempt, not a crash."""
    hook = HookConfig(name="h", action=CommandHook(argv=("/nonexistent/hook",)))
    outcome = await run(hook)
    assert outcome.state == "retry"
    assert outcome.error is not None and outcome.error.startswith("cannot start")


async def test_empty_argv_is_refused() -> None:
    """A command hook with an empty argv is a HookError, never a spawn."""
    with pytest.raises(HookError, match="no command to run"):
        await run(HookConfig(name="h", action=CommandHook(argv=())))


async def test_death_by_signal_retries() -> None:
    """A program killed by a signal is retried, the signal named."""
    outcome = await run(python_hook("import os,signal; os.kill(os.getpid(), signal.SIGABRT)"))
    assert (outcome.state, outcome.error) == ("retry", "killed by SIGABRT")


async def test_hang_times_out_and_group_dies(tmp_path: Path) -> None:
    """A hanging program is killed at its timeout and nothing is left running."""
    pidfile = tmp_path / "pids"
    script = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(60)"
    started = time.monotonic()
    outcome = await run(python_hook(script, timeout=0.5))
    assert time.monotonic() - started < 0.5 + GRACE + 1.0
    assert outcome.state == "retry"
    assert outcome.error == "timed out after 0.5s; process group killed"
    (pid,) = await read_pids(pidfile)
    assert not alive(pid)


async def test_sigterm_ignored_gets_sigkill(tmp_path: Path) -> None:
    """A program that ignores SIGTERM is SIGKILLed after the grace period."""
    pidfile = tmp_path / "pids"
    script = (
        "import os,signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(60)"
    )
    started = time.monotonic()
    outcome = await run(python_hook(script, timeout=0.5))
    assert time.monotonic() - started < 0.5 + 2 * GRACE + 1.0
    assert outcome.state == "retry"
    (pid,) = await read_pids(pidfile)
    assert not alive(pid)


GRANDCHILD = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open({pidfile!r}, "w") as f:
    f.write(f"{{os.getpid()}}\\n{{child.pid}}\\n")
{tail}
"""


@pytest.mark.parametrize(("tail", "state"), [("time.sleep(60)", "retry"), ("", "delivered")])
async def test_grandchildren_die_with_the_group(tmp_path: Path, tail: str, state: str) -> None:
    """A forked grandchild dies too, whether the hook times out or exits at once."""
    pidfile = tmp_path / "pids"
    script = GRANDCHILD.format(pidfile=str(pidfile), tail=tail)
    started = time.monotonic()
    outcome = await run(python_hook(script, timeout=1.0))
    assert time.monotonic() - started < 1.0 + 2 * GRACE + 1.0
    assert outcome.state == state
    pids = await read_pids(pidfile, 2)
    assert [alive(pid) for pid in pids] == [False, False]


async def test_ten_megabytes_of_output_is_capped() -> None:
    """A 10 MB printer returns promptly; only the tail is kept, marked as cut."""
    script = "import sys; sys.stdout.buffer.write(b'x' * 10_000_000 + b'THE END')"
    started = time.monotonic()
    outcome = await run(python_hook(script, cap=1000))
    assert time.monotonic() - started < 3.0
    assert outcome.state == "delivered"
    tail = outcome.output_tail
    assert tail is not None and tail.endswith("x" * 993 + "THE END")
    assert tail.splitlines()[0] == "[9999007 earlier bytes dropped]"


async def test_hook_not_reading_stdin_is_fine() -> None:
    """A program that never reads its stdin is not blocked by a large payload."""
    payload = {**PAYLOAD, "job": {"blob": "y" * 1_000_000}}
    outcome = await run(python_hook("print('ok')"), payload)
    assert outcome.state == "delivered"


HOSTILE = ["$(touch x)", "; touch y", "a\nb", "--rm", "`touch z`", "|| touch w"]


async def test_hostile_job_data_is_never_executed(tmp_path: Path) -> None:
    """Job fields full of shell syntax reach the hook only as data; argv is unchanged."""
    record = tmp_path / "record.json"
    script = (
        "import json,os,sys; "
        f"json.dump({{'argv': sys.argv[1:], 'stdin': json.load(sys.stdin), "
        f"'env': [os.environ[k] for k in ('WATCHERD_JOB_ID','WATCHERD_STATUS')]}}, "
        f"open({str(record)!r},'w'))"
    )
    hook = HookConfig(
        name="h",
        timeout=5,
        action=CommandHook(argv=(sys.executable, "-c", script, "--stage", "prod"), cwd=tmp_path),
    )
    payload = {**PAYLOAD, "job_id": HOSTILE[0], "status": HOSTILE[1], "job": {"f": HOSTILE}}
    outcome = await run(hook, payload)
    assert outcome.state == "delivered", outcome
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["--stage", "prod"]
    assert seen["stdin"]["job"]["f"] == HOSTILE
    assert seen["env"] == HOSTILE[:2]
    assert names_in(tmp_path) == ["record.json"]


async def test_environment_is_an_allowlist() -> None:
    """Secrets and systemd variables never reach a hook; WATCHERD_* and env: do."""
    parent = {
        "PATH": os.environ["PATH"],
        "HOME": "/home/w",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "TOGETHER_API_KEY": "sk-secret",
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": "1",
        "CREDENTIALS_DIRECTORY": "/run/credentials/watcherd.service",
        "INVOCATION_ID": "abc",
        "SHELL": "/bin/bash",
    }
    script = "import json,os; print(json.dumps(dict(os.environ)))"
    hook = python_hook(script, env=(("MY_VAR", "1"), ("WATCHERD_JOB_ID", "spoofed")))
    outcome = await run(hook, environ=parent)
    assert outcome.state == "delivered" and outcome.output_tail is not None
    env = json.loads(outcome.output_tail)
    env.pop("LC_CTYPE", None)  # Python's UTF-8 mode may set it in the child itself
    assert env == {
        "PATH": os.environ["PATH"],
        "HOME": "/home/w",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "MY_VAR": "1",
        "WATCHERD_EVENT": "job.completed",
        "WATCHERD_JOB_ID": "ft-abc",
        "WATCHERD_STATUS": "completed",
        "WATCHERD_PREVIOUS_STATUS": "running",
        "WATCHERD_DELIVERY_ID": "ft-abc:completed:h",
        "WATCHERD_ATTEMPT": "1",
    }


def test_environment_values_are_safe_text() -> None:
    """A missing previous status is empty and a NUL byte cannot break the spawn."""
    payload = {**PAYLOAD, "previous_status": None, "status": "odd\0status"}
    env = hook_environment(CommandHook(("true",)), payload, delivery_id="d", attempt=2, environ={})
    assert env["WATCHERD_PREVIOUS_STATUS"] == ""
    assert env["WATCHERD_STATUS"] == "oddstatus"
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"


async def test_cancellation_kills_the_group_and_propagates(tmp_path: Path) -> None:
    """Cancelling the caller kills the hook's group, then the cancellation goes on."""
    pidfile = tmp_path / "pids"
    script = GRANDCHILD.format(pidfile=str(pidfile), tail="time.sleep(60)")
    returned: list[Any] = []

    async def attempt() -> None:
        returned.append(await run(python_hook(script, timeout=30)))

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt)
            pids = await read_pids(pidfile, 2)
            started = time.monotonic()
            scope.cancel()
    assert scope.cancelled_caught and returned == []
    assert time.monotonic() - started < 2 * GRACE + 1.0
    assert [alive(pid) for pid in pids] == [False, False]


def test_output_tail_keeps_the_last_bytes() -> None:
    """The tail keeps exactly the last `cap` bytes and counts what it dropped."""
    tail = OutputTail(4)
    for chunk in (b"ab", b"cdef", b"", b"g"):
        tail.feed(chunk)
    assert tail.text() == "[3 earlier bytes dropped]\ndefg"
    assert OutputTail(4).text() is None
    broken = OutputTail(10)
    broken.feed("é".encode()[1:] + b"ok")
    assert broken.text() == "\ufffdok"
