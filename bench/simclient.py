"""The parent side of `bench.simproc`: start it, drive its clock, read its request log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


class SimProcess:
    """A simulator subprocess on loopback; use as a context manager."""

    def __init__(
        self, scenario: dict[str, Any], folder: Path, *, speed: float | None = None, chunk: int = 0
    ) -> None:
        path = folder / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario), encoding="utf-8")
        argv = [sys.executable, "-m", "bench.simproc", "--scenario", str(path)]
        if speed:
            argv += ["--speed", str(speed)]
        if chunk:
            argv += ["--chunk", str(chunk)]
        self._proc = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.head: dict[str, Any] = self._read()
        self.base_url: str = self.head["base_url"]
        self.job_ids: list[str] = self.head["job_ids"]
        self.t0: float = self.head["t0"]

    def _read(self) -> Any:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator process exited")
        return json.loads(line)

    def _ask(self, command: str) -> Any:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._read()

    def set_time(self, now: float) -> None:
        """Move the (manual) sim clock to `now`, sim epoch seconds."""
        self._ask(f"set {now!r}")

    def log(self) -> list[list[Any]]:
        """Requests served since the last call: [time, method, path, query, status]."""
        found: list[list[Any]] = self._ask("log")
        return found

    def sim_time(self, wall: float) -> float:
        """The sim time at wall-clock `wall` (speed clock only)."""
        head = self.head
        return float(head["epoch"] + (wall - head["real_start"]) * head["speed"])

    def close(self) -> None:
        """Stop the simulator."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write("quit\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
