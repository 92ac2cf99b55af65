"""Commands that run things: the daemon, the config check, health and the demo."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from watcherd.cli.common import emit, load, load_read

if TYPE_CHECKING:
    from watcherd.config.reading import StoreConfig


def cmd_run(args: argparse.Namespace) -> int:
    """`watcherd run [--once | --until-done]`."""
    import anyio

    from watcherd.daemon import Mode, run_daemon
    from watcherd.logs import configure_logging
    from watcherd.systemd import Notifier

    config = load(args)
    configure_logging(config.log)
    mode = Mode.ONCE if args.once else Mode.UNTIL_DONE if args.until_done else Mode.FOREVER
    notifier = Notifier.from_environment()
    return anyio.run(
        run_daemon, config.source or args.config, config, notifier, mode, backend="asyncio"
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    """`watcherd check-config`: validate (the jobs file too), then print the effective config."""
    from watcherd.config import JobsSource, render_effective
    from watcherd.config.render import cancel_notice

    config = load(args)
    JobsSource(config).entries()  # a jobs file `run` refuses is refused here too
    print(render_effective(config), end="")
    for line in cancel_notice(config):  # loud on stderr too, where a person looks
        print(f"watcherd check-config: {line}", file=sys.stderr)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """`watcherd health`: 0 if the daemon is alive and polling, else 1 with one line why."""
    from watcherd.daemon import health

    config = load_read(args)
    reason = health.check(config, time.time())
    if reason is None:
        print("ok")
        return 0
    emit(f"unhealthy: {reason}")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    """`watcherd demo`: the newcomer's first minute."""
    from watcherd.cli.demo import run_demo

    return run_demo(keep=args.keep)


def cmd_resume(args: argparse.Namespace) -> int:
    """`watcherd resume`: lift the stored Retry-After pauses; 0 whether or not there was one."""
    import anyio

    config = load(args)
    found = anyio.run(_clear_pauses, config.store, backend="asyncio")
    cleared, running = found if found is not None else ({}, False)
    now = time.time()
    active = {host: until for host, until in cleared.items() if until > now}
    if not active:
        print("no Retry-After pause is stored: requests are not held back")
        return 0
    for host, until in sorted(active.items()):
        print(f"{host}: cleared a pause until {_when(until)} ({_left(until - now)} left)")
    if running:
        print("the running daemon keeps its pause until a reload: systemctl reload watcherd")
    return 0


async def _clear_pauses(config: StoreConfig) -> tuple[dict[str, float], bool] | None:
    """The pauses lifted, and whether a daemon runs on the store; None: no store yet."""
    from watcherd.store.opening import open_configured, store_exists
    from watcherd.store.snapshot import Snapshot

    if not store_exists(config):
        return None
    async with open_configured(config, writer=True, lock=False) as store:
        cleared = await store.clear_host_pauses()
        if config.url is not None:
            return cleared, bool(await store.live_daemons())
    return cleared, Snapshot.daemon_running(config.path)


def _when(epoch: float) -> str:
    """An epoch time as UTC text; a time past what a date can hold says so."""
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return "a time beyond any date"


def _left(seconds: float) -> str:
    """`42s`, `17m`, `3h`, or `more than a year`."""
    if seconds >= 365 * 86400:
        return "more than a year"
    for size, unit in ((3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
