"""The daemon layer: its lifetime (`lifecycle`), what it says about itself (`status`),
the health protocol (`health`) and the optional Prometheus endpoint (`prometheus`).

`lifecycle` (and with it the whole watcher) is imported on first use, so that
`watcherd health` reads `health` alone."""

from typing import TYPE_CHECKING

from watcherd.lazy import lazy_attributes

if TYPE_CHECKING:
    from watcherd.daemon.lifecycle import Daemon, Mode, Runtime, open_runtime, run_daemon

__all__ = ["Daemon", "Mode", "Runtime", "open_runtime", "run_daemon"]

__getattr__ = lazy_attributes(__name__, dict.fromkeys(__all__, "lifecycle"))
