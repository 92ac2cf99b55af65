"""The simulator in its own process, driven over stdin, for the benchmarks.

    python -m bench.simproc --scenario FILE [--speed S | --manual] [--chunk N]

It prints one JSON line (base_url, job_ids, t0, each job's life, speed clock anchors), then obeys
one command a line: `set T` (manual clock, sim epoch seconds), `log` (a JSON line of
the requests served since the last `log`: [time, method, path, query, status]) and
`quit`. Each command is answered with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from watcherd.sim import ManualClock, SpeedClock, World, load_scenario, run_in_thread
from watcherd.sim import history as sim_history


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--speed", type=float, default=None)
    parser.add_argument("--start", type=float, default=1_779_196_000.0)
    parser.add_argument("--chunk", type=int, default=None, help="rows per cached chunk")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until `quit` or end of input."""
    args = _parser().parse_args(argv)
    if args.chunk:
        # Rows are pure functions of their index, so chunking changes cost, not content:
        # with thousands of jobs, small chunks keep the sim's row cache from thrashing.
        sim_history.CHUNK = args.chunk
    clock: ManualClock | SpeedClock
    clock = SpeedClock(args.speed, args.start) if args.speed else ManualClock(args.start)
    world = World(load_scenario(args.scenario), clock=clock)
    with run_in_thread(world) as sim:
        head = {"base_url": sim.base_url, "job_ids": world.job_ids(), "t0": world.t0}
        head["lives"] = {j: _life(world, j) for j in world.job_ids()}
        if isinstance(clock, SpeedClock):
            head |= {"epoch": clock.epoch, "real_start": clock.real_start, "speed": clock.speed}
        _say(head)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "quit":
                break
            if command == "set" and isinstance(clock, ManualClock):
                clock.set(float(arg))
                _say({"now": clock()})
            elif command == "log":
                records = sim.stats.snapshot()
                sim.stats.reset()
                _say([[r.time, r.method, r.path, r.query, r.status] for r in records])
            else:
                _say({"error": f"unknown command {line.strip()!r}"})
    return 0


def _life(world: World, job_id: str) -> list[float | str | None]:
    """[created, final time, final status] of a job (None, None when it never ends)."""
    timeline = world.job(job_id).timeline
    final = timeline.final
    return [timeline.created, *(final if final else (None, None))]


def _say(value: object) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
