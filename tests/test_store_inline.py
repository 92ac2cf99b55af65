"""A SQLite transaction runs whole on the database thread, in one trip there and back."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path

import aiosqlite
import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from tests.faultserver import FaultServer
from watcherd.config import load_config
from watcherd.daemon import Mode, run_daemon
from watcherd.errors import StoreError
from watcherd.store import HookSub, PollRecord, Store, inline
from watcherd.store.inline import InlineError
from watcherd.systemd import Notifier

pytestmark = pytest.mark.anyio


async def _note_thread(conn: aiosqlite.Connection, seen: list[int]) -> None:
    """A write body that notes the thread it runs on around its statements."""
    seen.append(threading.get_ident())
    await conn.execute("INSERT INTO state (key, value) VALUES ('k', 'v')")
    async with conn.execute("SELECT value FROM state WHERE key = 'k'") as cur:
        assert await cur.fetchone() == ("v",)
    seen.append(threading.get_ident())


async def _suspends(conn: aiosqlite.Connection) -> None:
    """A write body that awaits something other than the database (a bug)."""
    await conn.execute("INSERT INTO state (key, value) VALUES ('lost', 'x')")
    await asyncio.sleep(0)  # a bare yield: suspends without asking for a loop


async def test_a_transaction_body_runs_on_the_database_thread(tmp_path: Path) -> None:
    """BEGIN, the body's statements and COMMIT run together off the event loop's thread."""
    seen: list[int] = []
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store._write(_note_thread, seen)
        assert await store.get_state("k") == "v"
    assert len(seen) == 2 and seen[0] == seen[1] != threading.get_ident()


async def test_a_body_that_awaits_anything_else_is_refused_and_rolled_back(
    tmp_path: Path,
) -> None:
    """InlineError, nothing of the body kept, and the store goes on working."""
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        with pytest.raises(InlineError):
            await store._write(_suspends)
        assert await store.get_state("lost") is None
        await store.set_state("after", "1")
        assert await store.get_state("after") == "1"


async def test_group_commit_lands_every_page_once(tmp_path: Path) -> None:
    """Many polls recorded at once (group-committed) each land with their rows."""
    jobs = [f"ft-{i}" for i in range(40)]
    rows = [{"timestamp": 1_000 + s, "train/global_step": s, "train/loss": 1.5} for s in (1, 2)]
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([(j, None) for j in jobs], 1.0)
        async with anyio.create_task_group() as tg:
            for job_id in jobs:
                rec = PollRecord(job_id, 10.0, None, "running", rows)
                tg.start_soon(store.record_poll, rec)
        for job_id in jobs:
            assert [r["train/global_step"] for r in await store.all_metrics(job_id)] == [1, 2]
        assert await store.last_successful_poll() == 10.0


async def test_a_poll_ready_one_scheduler_pass_later_joins_the_group_commit(
    tmp_path: Path,
) -> None:
    """A page recorded one pass of the event loop after another shares its transaction
    (so a broken one splits the group: `store.group_commit_split` names two pages)."""
    broken = HookSub(None, ("completed",))  # type: ignore[arg-type]
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([("ft-a", None), ("ft-b", None)], 1.0)
        outcomes: dict[str, object] = {}

        async def record(job_id: str, hooks: tuple[HookSub, ...], passes: int) -> None:
            for _ in range(passes):
                await anyio.lowlevel.checkpoint()
            try:
                outcomes[job_id] = await store.record_poll(
                    PollRecord(job_id, 10.0, None, "completed", (), hooks)
                )
            except StoreError as exc:
                outcomes[job_id] = exc

        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(record, "ft-a", (), 0)
                tg.start_soon(record, "ft-b", (broken,), 1)
    splits = [e for e in logs if e["event"] == "store.group_commit_split"]
    assert [e["pages"] for e in splits] == [2]
    assert isinstance(outcomes["ft-b"], StoreError)
    assert not isinstance(outcomes["ft-a"], StoreError)


async def test_the_daemon_runs_with_the_longer_switch_interval(
    tmp_path: Path, server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watcherd run` sets the GIL switch interval that `store.inline` argues for."""
    config_path = tmp_path / "c.yaml"
    config_path.write_text(
        f"api:\n  base_url: {server.url}\njobs:\n  ids: [ft-abc]\nstore:\n  path: w.db\n"
    )
    monkeypatch.setenv("TOGETHER_API_KEY", "k")
    config = load_config(config_path)
    sys.setswitchinterval(0.005)
    # The daemon ignores these signals as it ends: give this worker (and the children
    # later tests start) its own dispositions back.
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert await run_daemon(config_path, config, Notifier(), Mode.ONCE) == 0
        assert sys.getswitchinterval() == pytest.approx(inline.SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(0.005)
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert any("ft-abc" in seen.target for seen in server.seen), "the daemon polled the job"
