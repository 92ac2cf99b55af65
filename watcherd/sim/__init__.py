"""A Together-compatible fine-tuning service, simulated: for tests, benchmarks and the demo.

It imports nothing of watcherd but `watcherd.model`. The pieces:

- `World` (world.py): jobs on a sim clock, built from a `Scenario` (scenario.py);
  `truth`, `visible_rows`, `status_at`, `transitions` give tests the ground truth.
- `serve` / `run_in_thread` (server.py): the HTTP API under /v1 with fault injection
  (faults.py) and request statistics (stats.py).
- `main` (cli.py): `watcherd sim` / `python -m watcherd.sim`.
"""

from watcherd.sim.clock import Clock, ManualClock, SpeedClock
from watcherd.sim.faults import KINDS as FAULT_KINDS
from watcherd.sim.faults import FaultSpec, FaultSpecError, parse_faults
from watcherd.sim.scenario import DEFAULT_SCENARIO, JobSpec, Scenario, ScenarioError, load_scenario
from watcherd.sim.server import SimServer, run_in_thread, serve
from watcherd.sim.stats import RequestRecord, SimStats
from watcherd.sim.world import CancelRefusedError, UnknownJobError, World

__all__ = [
    "DEFAULT_SCENARIO",
    "FAULT_KINDS",
    "CancelRefusedError",
    "Clock",
    "FaultSpec",
    "FaultSpecError",
    "JobSpec",
    "ManualClock",
    "RequestRecord",
    "Scenario",
    "ScenarioError",
    "SimServer",
    "SimStats",
    "SpeedClock",
    "UnknownJobError",
    "World",
    "demo_scenario_path",
    "load_scenario",
    "parse_faults",
    "run_in_thread",
    "serve",
]


def demo_scenario_path() -> str:
    """Path of the shipped demo scenario (scenarios/demo.yaml)."""
    from pathlib import Path

    return str(Path(__file__).with_name("scenarios") / "demo.yaml")
