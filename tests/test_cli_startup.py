"""Read commands import only what they use: no HTTP stack, no event loop, no logging setup;
and once the config is cached, no YAML parser and no dataclasses either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from watcherd.model import MetricRecord
from watcherd.store import PollRecord, Store

ROOT = Path(__file__).resolve().parent.parent
JOB = "ft-startup"
HEAVY = ("httpx", "anyio", "structlog", "aiosqlite", "asyncio", "msgspec", "psycopg")
#: Also absent when the config's settings come from the cache (the second command on).
PARSER = ("yaml", "dataclasses", "inspect", "hashlib", "_ast")
PROBE = """
import json, sys
from watcherd.cli import main
code = main(sys.argv[2:])
sys.stdout.flush()
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
print("\\nMODULES " + json.dumps([code, heavy]))
"""


async def _fill(db: Path) -> None:
    rows: list[MetricRecord] = [
        ("train", s, s, 1.0 / s, json.dumps({"train/global_step": s, "train/loss": 1.0 / s}))
        for s in range(1, 50)
    ]
    async with Store.open(db, writer=True) as store:
        await store.sync_watched([(JOB, "note")], 1.0)
        job = {"id": JOB, "status": "running"}
        await store.record_poll(PollRecord(JOB, 2.0, job, "running", records=rows))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config whose database holds one job with a few rows."""
    folder = tmp_path_factory.mktemp("startup")
    anyio.run(_fill, folder / "w.db", backend="asyncio")
    path = folder / "watcherd.yaml"
    path.write_text(f"store:\n  path: {folder / 'w.db'}\njobs:\n  file: null\n", encoding="utf-8")
    return path


def _run(config: Path, argv: list[str], unwanted: tuple[str, ...]) -> tuple[int, list[str], str]:
    """The exit code of `watcherd ARGV --config CONFIG` run in a new process, and which
    modules of `unwanted` it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(unwanted), *argv, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = done.stdout.rsplit("MODULES ", 1)[-1]
    code, found = json.loads(line)
    return code, found, done.stdout + done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["list", "--json"],
        ["show", JOB],
        ["metrics", JOB],
        ["metrics", JOB, "--json", "--resolution", "5"],
        ["hooks"],
        ["alerts"],
        ["events", JOB],
        ["cost"],
        ["health"],
    ],
)
def test_read_commands_do_not_import_the_daemon_stack(config: Path, argv: list[str]) -> None:
    """After the command ran, no module of HEAVY (the daemon's stack) was ever imported;
    run again with the same config (cached), none of PARSER either."""
    code, found, output = _run(config, argv, HEAVY)
    assert found == [], output
    assert code == (1 if argv == ["health"] else 0), output  # health: no daemon runs
    code, found, output = _run(config, argv, HEAVY + PARSER)
    assert found == [], output
    assert code == (1 if argv == ["health"] else 0), output
