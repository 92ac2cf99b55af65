"""Shared helpers: worker subprocesses, medians, resource figures, bench configs."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.simclient import ROOT
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, JobsConfig, PollConfig, StoreConfig

#: The key the bench clients send (the simulator accepts any bearer key).
API_KEY = "bench-key"
#: Requests in flight, the same for watcherd and every baseline.
CONCURRENCY = 8


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    return float(statistics.median(values))


def peak_rss_mb() -> float:
    """This process's own peak resident set size so far, in MiB.

    Linux's `ru_maxrss` also counts the parent's peak at the fork that started this
    worker (the bench parent reads whole bodies), so the high-water mark of this
    process's own memory, `VmHWM`, is read instead where /proc has it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(kind: str, params: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Run `python -m bench.worker KIND PARAMS` and return the JSON it prints last."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", kind, json.dumps(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {kind} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def timed_subprocess(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds one command takes (output discarded; it must succeed)."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def subprocess_cpu(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """CPU seconds (user + system) one command takes as a whole process (output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_config(db: Path, *, interval: float = 60.0, hooks: Any = ()) -> Config:
    """A daemon config for the benches: no jobs file, default poll timings."""
    return Config(
        store=StoreConfig(path=db),
        jobs=JobsConfig(file=None),
        poll=PollConfig(interval=interval, min_interval=10.0, max_backoff=600.0),
        hooks=tuple(hooks),
    )


def bench_api_config() -> ApiConfig:
    """The API settings the bench's watcherd side runs with."""
    return ApiConfig(max_concurrency=CONCURRENCY, max_rate=1e9)


def watcherd_http() -> httpx.AsyncClient:
    """The httpx client watcherd's daemon would build for these settings."""
    return ApiClient.http_client(bench_api_config())


def bench_api(http: httpx.AsyncClient, base_url: str) -> ApiClient:
    """watcherd's client with the bench's concurrency and no rate cap (time is virtual)."""
    return ApiClient(
        http, base_url=base_url, api_key=API_KEY, max_concurrency=CONCURRENCY, max_rate=1e9
    )


def bare_client(base_url: str) -> httpx.AsyncClient:
    """The baselines' plain httpx client, with the same connection cap."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"authorization": f"Bearer {API_KEY}"},
        limits=httpx.Limits(max_connections=CONCURRENCY),
        timeout=120.0,
    )
