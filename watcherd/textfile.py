"""Bounded reads of the small files watcherd is pointed at: config, jobs file, secrets.

Opening a FIFO for reading blocks until a writer comes, and `/dev/zero` never ends:
such files are refused before a byte is read (the open itself does not block), and a
regular file larger than the caller's limit is refused after reading one byte past it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from watcherd.errors import ConfigError

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_regular(path: Path, *, limit: int, what: str) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at `path` and its status (symlinks followed).

    OSError (missing, unreadable) propagates for the caller to word; a file that is
    not regular or is larger than `limit` bytes is a ConfigError naming `what`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fd)
        refuse_irregular(st, path, what)
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(f"{what} is larger than {_size(limit)}", path=str(path))
    return data, st


def refuse_irregular(st: os.stat_result, path: Path, what: str) -> None:
    """ConfigError unless `st` is a regular file's."""
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "an unusual file")
        raise ConfigError(f"{what} is not a regular file (it is {kind})", path=str(path))


def _size(limit: int) -> str:
    """`1 MiB`, `16 MiB`, or bytes for smaller limits."""
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


def present(path: Path | None) -> bool:
    """True if something exists at `path` (permission errors count as present)."""
    if path is None:
        return False
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True
