"""watcherd's SQLite store: the watched set, metrics, transitions, the hook outbox.

    Store.open(path, writer=True)    the daemon: takes `<path>.lock`, creates and migrates
    Store.open(path, writer=False)   the CLI: read-only, works while the daemon writes

Modules: `schema` (migrations), `connection` (lock, file modes, pragmas), `rows`
(metric columns), `writer` and `outbox` (transaction bodies), `readers` (queries),
`core` (the Store that serializes and shields them).
"""

from watcherd.store.core import Store
from watcherd.store.records import HookLike, HookSub, JobState, PollRecord, PollResult

__all__ = ["HookLike", "HookSub", "JobState", "PollRecord", "PollResult", "Store"]
