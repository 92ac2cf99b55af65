"""Commands that run things: the daemon, the config check, health and the demo."""

from __future__ import annotations

import argparse
import time

import anyio

from watcherd.cli.common import load, reader
from watcherd.config import Config, render_effective
from watcherd.daemon import Daemon, Mode
from watcherd.logs import configure_logging
from watcherd.systemd import Notifier

#: `health` fails when the daemon's heartbeat is older than this many seconds.
HEARTBEAT_STALE = 60.0


def cmd_run(args: argparse.Namespace) -> int:
    """`watcherd run [--once | --until-done]`."""
    config = load(args)
    configure_logging(config.log)
    mode = Mode.ONCE if args.once else Mode.UNTIL_DONE if args.until_done else Mode.FOREVER
    daemon = Daemon(config.source or args.config, config, Notifier.from_environment())
    return anyio.run(daemon.run, mode, backend="asyncio")


def cmd_check_config(args: argparse.Namespace) -> int:
    """`watcherd check-config`: validate, then print the effective config."""
    config = load(args)
    print(render_effective(config), end="")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """`watcherd health`: 0 if the daemon is alive and polling, else 1 with the reason."""
    config = load(args)
    reason = anyio.run(_health_problem, config, backend="asyncio")
    if reason is None:
        print("ok")
        return 0
    print(f"unhealthy: {reason}")
    return 1


async def _health_problem(config: Config) -> str | None:
    async with reader(config) as store:
        heartbeat = await store.get_state("heartbeat_at")
        last_success = await store.last_successful_poll()
        status = await store.get_state("status_line")
        locked = store.daemon_running()
    now = time.time()
    if not locked:
        return "no daemon holds the database lock"
    if heartbeat is None or now - float(heartbeat) > HEARTBEAT_STALE:
        return "the daemon's heartbeat is stale"
    if last_success is None:
        return f"no successful poll yet ({status or 'starting'})"
    limit = max(3 * config.poll.interval, config.poll.max_backoff) + HEARTBEAT_STALE
    if now - last_success > limit:
        return f"last successful poll {now - last_success:.0f}s ago ({status})"
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    """`watcherd demo`: the newcomer's first minute."""
    from watcherd.demo import run_demo

    return run_demo(keep=args.keep)
