"""`watcherd sim`: serve the Together-compatible simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import anyio
import yaml

from watcherd.sim import faults as faults_module
from watcherd.sim.faults import FaultSpec, FaultSpecError, parse_faults
from watcherd.sim.scenario import DEFAULT_SCENARIO, ScenarioError, load_scenario
from watcherd.sim.server import serve
from watcherd.sim.world import World


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help documents the fault syntax)."""
    parser = argparse.ArgumentParser(
        prog="watcherd sim",
        description="Serve a simulated Together AI fine-tuning API under /v1 on loopback.",
        epilog="fault spec (--faults):\n" + (faults_module.__doc__ or "").split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's, 1)")
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="sim seconds per real second (default: scenario's, 60)",
    )
    parser.add_argument(
        "--scenario", metavar="PATH", help="scenario YAML (default: 6 built-in jobs)"
    )
    parser.add_argument("--faults", metavar="SPEC", default="", help="fault injection, e.g. 0.2")
    parser.add_argument("--api-key", metavar="KEY", help="require exactly this bearer key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; 0 after a signal, 1 if it cannot serve, 2 for bad options."""
    args = build_parser().parse_args(argv)
    try:
        scenario = load_scenario(args.scenario or DEFAULT_SCENARIO)
        faults = parse_faults(args.faults)
        world = World(scenario, seed=args.seed, speed=args.speed)
    except (ScenarioError, FaultSpecError, OSError, yaml.YAMLError) as exc:
        print(f"watcherd sim: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(_serve, world, args, faults, backend="asyncio")
    except OSError as exc:
        print(f"watcherd sim: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(world: World, args: argparse.Namespace, faults: FaultSpec) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve(world, args.host, args.port, faults, args.api_key) as sim:
            key = args.api_key or "anything"
            print(
                f"watcherd sim: {len(world.job_ids())} jobs at {sim.base_url} "
                f"(speed {world.speed:g}x, seed {world.seed}); "
                f"export TOGETHER_BASE_URL={sim.base_url} TOGETHER_API_KEY={key}",
                flush=True,
            )
            async for _ in signals:
                return
