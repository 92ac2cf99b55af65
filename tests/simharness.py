"""Helpers for tests that meet the simulator: fixed clocks, small scenarios, raw HTTP."""

from __future__ import annotations

import socket
from typing import Any

from watcherd.sim import ManualClock, World

#: A fixed sim "now" for tests (2026-05-19T13:06:40Z).
NOW = 1_779_196_000.0

#: Finite (no NaN) jobs, all finished or running at NOW.
SMALL_SCENARIO: dict[str, Any] = {
    "seed": 3,
    "jobs": [
        {"suffix": "sft", "created": "-1h", "steps": 40, "seconds_per_step": 5, "eval_steps": 10},
        {"suffix": "dpo", "method": "dpo", "created": "-1h", "steps": 30, "eval_steps": 5},
        {"suffix": "live", "created": "-10m", "steps": 500, "seconds_per_step": 3, "n_epochs": 2},
        {"suffix": "queued", "created": "-1m", "stay": "queued"},
        {"suffix": "err", "created": "-1h", "steps": 50, "final": "error", "error_at_step": 20},
    ],
}


def small_world(now: float = NOW) -> tuple[World, ManualClock]:
    """SMALL_SCENARIO on a manual clock standing at `now`."""
    clock = ManualClock(now)
    return World(SMALL_SCENARIO, clock=clock), clock


def raw_request(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the sim on loopback and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                chunks.append(b"<RESET>")
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def get_bytes(path: str, key: str = "x") -> bytes:
    """A GET request that asks the server to close afterwards."""
    lines = [f"GET {path} HTTP/1.1", "Host: sim", f"Authorization: Bearer {key}"]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode()
