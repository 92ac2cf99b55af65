"""Commands that run things: the daemon, the config check, health and the demo."""

from __future__ import annotations

import argparse
import sys
import time

import anyio

from watcherd.cli.common import emit, load
from watcherd.config import render_effective
from watcherd.config.render import cancel_notice
from watcherd.daemon import Mode, health, run_daemon
from watcherd.logs import configure_logging
from watcherd.systemd import Notifier


def cmd_run(args: argparse.Namespace) -> int:
    """`watcherd run [--once | --until-done]`."""
    config = load(args)
    configure_logging(config.log)
    mode = Mode.ONCE if args.once else Mode.UNTIL_DONE if args.until_done else Mode.FOREVER
    notifier = Notifier.from_environment()
    return anyio.run(
        run_daemon, config.source or args.config, config, notifier, mode, backend="asyncio"
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    """`watcherd check-config`: validate, then print the effective config."""
    config = load(args)
    print(render_effective(config), end="")
    for line in cancel_notice(config):  # loud on stderr too, where a person looks
        print(f"watcherd check-config: {line}", file=sys.stderr)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """`watcherd health`: 0 if the daemon is alive and polling, else 1 with one line why."""
    config = load(args)
    reason = anyio.run(health.check, config, time.time(), backend="asyncio")
    if reason is None:
        print("ok")
        return 0
    emit(f"unhealthy: {reason}")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    """`watcherd demo`: the newcomer's first minute."""
    from watcherd.cli.demo import run_demo

    return run_demo(keep=args.keep)
