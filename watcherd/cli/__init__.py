"""The command line: the only place that turns errors into messages and exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from watcherd.errors import ConfigError, StoreUnusableError, UsageError, WatcherdError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78
#: EX_IOERR: the database cannot be written (disk full, I/O error, the file deleted).
EXIT_STORE = 74


#: command -> (module in watcherd.cli, function); imported only when run.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("daemon_cmds", "cmd_run"),
    "check-config": ("daemon_cmds", "cmd_check_config"),
    "health": ("daemon_cmds", "cmd_health"),
    "demo": ("daemon_cmds", "cmd_demo"),
    "resume": ("daemon_cmds", "cmd_resume"),
    "add": ("job_cmds", "cmd_add"),
    "remove": ("job_cmds", "cmd_remove"),
    "list": ("job_cmds", "cmd_list"),
    "wait": ("job_cmds", "cmd_wait"),
    "hooks": ("job_cmds", "cmd_hooks"),
    "show": ("view_cmds", "cmd_show"),
    "metrics": ("view_cmds", "cmd_metrics"),
    "events": ("view_cmds", "cmd_events"),
    "cost": ("view_cmds", "cmd_cost"),
    "report": ("view_cmds", "cmd_report"),
    "alerts": ("view_cmds", "cmd_alerts"),
    "cancel": ("cancel_cmd", "cmd_cancel"),
    "migrate": ("migrate_cmd", "cmd_migrate"),
}


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    module_name, function = COMMANDS[name]
    module = importlib.import_module(f"watcherd.cli.{module_name}")
    command: Callable[[argparse.Namespace], int] = getattr(module, function)
    return command


def stop_quietly_until_ready() -> None:
    """SIGTERM/SIGINT before the daemon's own handlers are up: exit 0, write nothing half.

    Every database write is a transaction, so stopping anywhere in start-up is safe;
    a SIGHUP this early has nothing to reload and is ignored. The daemon replaces
    these handlers once its event loop runs.
    """

    import signal  # `run` only: the module builds its enums on import

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `watcherd` command and return its exit code."""
    from watcherd.cli.parser import build_parser

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"] and argv is None:
        stop_quietly_until_ready()
    if args_list[:1] == ["sim"]:
        from watcherd.sim.cli import main as sim_main

        return sim_main(args_list[1:])
    parser = build_parser(args_list[0] if args_list else None)
    args = parser.parse_args(args_list)
    try:
        return _command(args.command)(args)
    except ConfigError as exc:
        _error(f"watcherd: configuration error: {exc}")
        return EXIT_CONFIG
    except UsageError as exc:
        _error(f"watcherd {args.command}: {exc}")
        return EXIT_USAGE
    except StoreUnusableError as exc:
        print(f"watcherd {args.command}: the database cannot be used: {exc}", file=sys.stderr)
        return EXIT_STORE
    except WatcherdError as exc:
        _error(f"watcherd {args.command}: {exc}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `watcherd list | head -1`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


def _error(message: str) -> None:
    """An error on stderr; what the server said in it cannot drive the terminal."""
    from watcherd.views import terminal_text

    print(terminal_text(message, color=False), file=sys.stderr)
