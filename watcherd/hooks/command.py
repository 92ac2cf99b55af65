"""Command hooks: a program run from an argv list, the event JSON on its stdin.

Never a shell, and job data (which comes from the remote API) never in argv; it
reaches the program on stdin and in `WATCHERD_*` variables. The environment is
built from an allowlist (`PATH`, `HOME`, `LANG`, `LANGUAGE`, `LC_*`, `TZ`,
`TMPDIR`, `USER`, `LOGNAME`), then the hook's own `env:`, then the `WATCHERD_*`
variables, which a hook's `env:` cannot override. `SHELL` is left out on purpose:
nothing here is interactive. So the API key, `NOTIFY_SOCKET`, `WATCHDOG_*`,
`CREDENTIALS_DIRECTORY` and `INVOCATION_ID` never reach a hook.

Exit status: 0 delivered; 65 (`EX_DATAERR`, "this event can never be handled")
gives up at once; any other status, 75 (`EX_TEMPFAIL`) included, a death by
signal, a timeout or a failure to start is retried.

The program runs in its own session and process group. When it exits, times out
or the caller is cancelled, the whole group gets SIGTERM, then SIGKILL after a
grace period, so forked children die with it. Limitation: a descendant that calls
`setsid()` (a daemonizing double fork) leaves the group and survives; run such
hooks under a service manager instead. On cancellation (a graceful stop) the group
is killed under a shielded scope and the cancellation is re-raised: the caller
records the attempt as failed (`Outcome.interrupted()`), so it is retried.

Output (stdout and stderr merged) is read as it comes; only the last
`output_cap_bytes` are kept, the rest is read and dropped, so a chatty program
neither blocks on a full pipe nor fills memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any, Final

import anyio
import anyio.abc

from watcherd.config import CommandHook, HookConfig
from watcherd.errors import HookError
from watcherd.hooks.outcome import Outcome
from watcherd.hooks.payload import encode_payload

EXIT_GIVE_UP: Final = 65
EXIT_TEMPFAIL: Final = 75
ALLOWED_ENV: Final = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME"}
)
DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
#: How long output may still arrive once the group is gone (a `setsid` escapee
#: holding the pipe open must not hold us).
DRAIN_GRACE: Final = 0.5
_POLL: Final = 0.02


class OutputTail:
    """The last `cap` bytes of a stream, and how many bytes came in all."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 0)
        self.total = 0
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add a chunk, dropping the oldest bytes beyond the cap."""
        self.total += len(chunk)
        self._buf += chunk[-self.cap :] if self.cap else b""
        if len(self._buf) > self.cap:
            del self._buf[: len(self._buf) - self.cap]

    def text(self) -> str | None:
        """The kept tail as text (invalid UTF-8 replaced), None if there was no output."""
        if not self.total:
            return None
        tail = bytes(self._buf).decode(errors="replace")
        dropped = self.total - len(self._buf)
        return f"[{dropped} earlier bytes dropped]\n{tail}" if dropped else tail


def hook_environment(
    command: CommandHook,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
    attempt: int,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """The complete environment of a command hook (see the module docstring)."""
    env = {k: v for k, v in environ.items() if k in ALLOWED_ENV or k.startswith("LC_")}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(command.env)
    ours = {
        "WATCHERD_EVENT": payload.get("type"),
        "WATCHERD_JOB_ID": payload.get("job_id"),
        "WATCHERD_STATUS": payload.get("status"),
        "WATCHERD_PREVIOUS_STATUS": payload.get("previous_status"),
        "WATCHERD_DELIVERY_ID": delivery_id,
        "WATCHERD_ATTEMPT": str(attempt),
    }
    env.update({k: _env_value(v) for k, v in ours.items()})
    return env


async def run_command(
    hook: HookConfig,
    command: CommandHook,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
    attempt: int,
    environ: Mapping[str, str] = os.environ,
    kill_grace: float = 5.0,
) -> Outcome:
    """Run one attempt of a command hook; see the module docstring for the rules."""
    if not command.argv:
        raise HookError(f"hook {hook.name!r} has no command to run")
    argv = list(command.argv)
    env = hook_environment(
        command, payload, delivery_id=delivery_id, attempt=attempt, environ=environ
    )
    try:
        process = await anyio.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=command.cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome.retry(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    group = _Group(process, kill_grace)
    tail = OutputTail(hook.output_cap_bytes)
    try:
        timed_out = await _supervise(group, encode_payload(payload), tail, hook.timeout)
    finally:
        with anyio.CancelScope(shield=True):
            await group.stop()
            await _close(process)
    return _classify(process.returncode, timed_out, hook.timeout, tail.text())


async def _supervise(group: _Group, body: bytes, tail: OutputTail, limit: float) -> bool:
    """Feed stdin, drain output, wait for exit or `limit` seconds, then clear the group.

    Returns True if the time limit struck.
    """
    process = group.process
    drained = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_feed, process, body)
        tg.start_soon(_drain, process, tail, drained)
        with anyio.move_on_after(limit) as deadline:
            await process.wait()
        with anyio.CancelScope(shield=True):
            await group.stop()
        with anyio.move_on_after(DRAIN_GRACE):
            await drained.wait()
        tg.cancel_scope.cancel()
    return deadline.cancelled_caught


async def _feed(process: anyio.abc.Process, body: bytes) -> None:
    """Write the payload to stdin and close it; a program that does not read is fine."""
    if process.stdin is None:
        return
    try:
        await process.stdin.send(body)
        await process.stdin.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return


async def _drain(process: anyio.abc.Process, tail: OutputTail, done: anyio.Event) -> None:
    """Read output to EOF, keeping only its tail."""
    try:
        if process.stdout is not None:
            async for chunk in process.stdout:
                tail.feed(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        done.set()


class _Group:
    """The hook's process group (its id is the leader's pid), stopped at most once."""

    def __init__(self, process: anyio.abc.Process, grace: float) -> None:
        self.process = process
        self.grace = grace
        self.stopped = False

    async def stop(self) -> None:
        """SIGTERM the group, SIGKILL whatever is left after the grace period.

        Must run shielded. Returns at once if the program exited and left nothing
        behind. Where PID 1 does not reap orphans (some containers), their zombies
        keep the group visible, so the whole grace period is waited: bounded.
        """
        if self.stopped:
            return
        pgid = self.process.pid
        if self.process.returncode is None or _group_alive(pgid):
            _signal_group(pgid, signal.SIGTERM)
            with anyio.move_on_after(self.grace):
                await self.process.wait()
                # No event tells when a process group empties: poll it.
                while _group_alive(pgid):  # noqa: ASYNC110
                    await anyio.sleep(_POLL)
            _signal_group(pgid, signal.SIGKILL)
            with anyio.move_on_after(self.grace):
                await self.process.wait()
        self.stopped = True


async def _close(process: anyio.abc.Process) -> None:
    """Close our ends of the pipes (the process is already reaped or killed)."""
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            await stream.aclose()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return


def _classify(code: int | None, timed_out: bool, timeout: float, tail: str | None) -> Outcome:
    """Map how the program ended to an Outcome."""
    if timed_out:
        return Outcome.retry(
            f"timed out after {timeout:g}s; process group killed", output_tail=tail
        )
    if code == 0:
        return Outcome.delivered(output_tail=tail)
    if code == EXIT_GIVE_UP:
        return Outcome.give_up(f"exit status {code} (give up)", output_tail=tail)
    if code is None:
        return Outcome.retry("did not exit after SIGKILL", output_tail=tail)
    if code < 0:
        return Outcome.retry(f"killed by {_signal_name(-code)}", output_tail=tail)
    note = " (temporary failure)" if code == EXIT_TEMPFAIL else ""
    return Outcome.retry(f"exit status {code}{note}", output_tail=tail)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _env_value(value: object) -> str:
    """Text for an environment variable: None is empty, NUL bytes are dropped."""
    return "" if value is None else str(value).replace("\0", "")
