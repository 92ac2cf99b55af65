"""The daemon layer: its lifetime (`lifecycle`), what it says about itself (`status`),
the health protocol (`health`) and the optional Prometheus endpoint (`prometheus`)."""

from watcherd.daemon.lifecycle import Daemon, Mode, Runtime, open_runtime, run_daemon

__all__ = ["Daemon", "Mode", "Runtime", "open_runtime", "run_daemon"]
