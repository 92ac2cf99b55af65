"""Commands that run things: the daemon, the config check, health and the demo."""

from __future__ import annotations

import argparse
import time

from watcherd.cli.common import emit, load


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
    """`watcherd check-config`: validate, then print the effective config."""
    from watcherd.config import render_effective

    config = load(args)
    print(render_effective(config), end="")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """`watcherd health`: 0 if the daemon is alive and polling, else 1 with one line why."""
    from watcherd.daemon import health

    config = load(args)
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
