"""watcherd's SQLite store: the watched set, metrics, transitions, the hook outbox.

    Store.open(path, writer=True)    the daemon: takes `<path>.lock`, creates and migrates
    Store.open(path, writer=False)   the CLI: read-only, works while the daemon writes

    Snapshot.open(path)              the read commands: plain sqlite3, the same queries

Modules: `schema` (migrations), `connection` (lock, file modes, pragmas), `rows`
(metric columns), `writer` and `outbox` (transaction bodies), `readers` (queries),
`core` (the Store that serializes and shields them), `snapshot` (the readers run
synchronously, without aiosqlite, anyio or asyncio: a read command starts fast).
`Store` and the write-side records are imported on first use, for the same reason.
"""

from typing import TYPE_CHECKING

from watcherd.lazy import lazy_attributes

if TYPE_CHECKING:
    from watcherd.store.core import Store
    from watcherd.store.records import HookLike, HookSub, JobState, PollRecord, PollResult

_HOME = {"Store": "core", **dict.fromkeys(("HookLike", "HookSub", "JobState"), "records")}
_HOME |= dict.fromkeys(("PollRecord", "PollResult"), "records")

__getattr__ = lazy_attributes(__name__, _HOME)

__all__ = ["HookLike", "HookSub", "JobState", "PollRecord", "PollResult", "Store"]
