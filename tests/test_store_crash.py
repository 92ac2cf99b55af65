"""SIGKILL during writes: the database stays sound and holds whole transactions only."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

PAGE = 200
HOOK_STATUSES = ("s0", "s1", "s2")

# Writes pages forever: PAGE rows, a status change and outbox rows per transaction,
# printing the page number after each commit.
WRITER = f"""
import sys, anyio
from pathlib import Path
from watcherd.store import HookSub, PollRecord, Store

async def main(db):
    hooks = (HookSub("h", {HOOK_STATUSES!r}),)
    async with Store.open(Path(db), writer=True) as store:
        await store.sync_watched([("ft-a", None)], 0.0)
        top = (await store.job_states())["ft-a"].max_step
        step = 0 if top is None else top + 1
        while True:
            page = step // {PAGE}
            rows = [{{"timestamp": s, "train/global_step": s, "train/loss": s / 7}}
                    for s in range(step, step + {PAGE})]
            status = "s%d" % (page % 3)
            await store.record_poll(PollRecord("ft-a", float(page), None, status, rows, hooks))
            print(page, flush=True)
            step += {PAGE}

anyio.run(main, sys.argv[1], backend="asyncio")
"""


def run_and_kill(db: Path, pages: int) -> int:
    """Start the writer, SIGKILL it after it reports `pages` commits; return the last one."""
    root = Path(__file__).resolve().parents[1]
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, cwd=root
    ) as proc:
        assert proc.stdout is not None
        last = -1
        for _ in range(pages):
            last = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return last


def check(db: Path) -> tuple[int, list[int], int, str, list[str]]:
    """integrity_check, row steps, transition count, job status, delivery ids."""
    conn = sqlite3.connect(db)
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        steps = [r[0] for r in conn.execute("SELECT step FROM metrics ORDER BY step")]
        moves = conn.execute("SELECT COUNT(*) FROM transitions").fetchone()[0]
        status, max_step = conn.execute("SELECT status, max_step FROM jobs").fetchone()
        ids = [r[0] for r in conn.execute("SELECT id FROM deliveries ORDER BY id")]
    finally:
        conn.close()
    assert verdict == "ok"
    assert max_step == steps[-1]
    return len(steps) // PAGE, steps, moves, status, ids


def test_sigkill_mid_writes_leaves_whole_transactions(tmp_path: Path) -> None:
    """Killed repeatedly while writing, the database holds only complete pages, consistently."""
    db, rng = tmp_path / "w.db", random.Random(7)
    for _ in range(4):
        reported = run_and_kill(db, rng.randint(2, 8))
        pages, steps, moves, status, ids = check(db)
        assert pages - 1 >= reported  # every reported commit survived
        assert steps == list(range(pages * PAGE))  # whole pages only, no gaps, no duplicates
        assert moves == pages and status == f"s{(pages - 1) % 3}"
        assert ids == [f"ft-a:{s}:h" for s in HOOK_STATUSES[: min(pages, 3)]]
