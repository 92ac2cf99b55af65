"""`python -m bench.worker KIND PARAMS_JSON`: one measurement in a fresh process.

Prints the result as one JSON line, so that the parent reads this process's own CPU
time and peak RSS, untouched by the simulator (its own process) or other workloads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def _kinds() -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    from bench import alerts, cliquery, economy, incremental, ingest, polling

    return {
        "poll": polling.worker,
        "ingest": ingest.worker,
        "incremental": incremental.worker,
        "economy": economy.worker,
        "alerts": alerts.worker,
        "cli_setup": cliquery.setup,
        "cli_inproc": cliquery.inproc,
    }


def main(argv: list[str]) -> int:
    """Run the named measurement and print its JSON result."""
    from watcherd.config import LogConfig
    from watcherd.logs import configure_logging

    configure_logging(LogConfig(format="json", level="warning"))
    kind, params = argv[0], json.loads(argv[1])
    result = _kinds()[kind](params)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
