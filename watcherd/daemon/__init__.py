"""The daemon layer: its lifetime (`lifecycle`), what it says about itself (`status`),
the health protocol (`health`) and the optional Prometheus endpoint (`prometheus`).

`lifecycle` (and with it the whole watcher) is imported on first use, so that
`watcherd health` reads `health` alone."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcherd.daemon.lifecycle import Daemon, Mode, Runtime, open_runtime, run_daemon

__all__ = ["Daemon", "Mode", "Runtime", "open_runtime", "run_daemon"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from watcherd.daemon import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
