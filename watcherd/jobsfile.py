"""The jobs file: the job IDs to watch, one a line.

Format::

    # comments start with '#'; blank lines are ignored
    ft-abc123                # an optional note follows the ID after '#'
    ft-def456

An ID is `ft-` plus letters, digits, `-` and `_`; anything else on a line is an
error naming file and line. Lines end at LF, CR LF or CR only, as an editor counts
them: a Unicode line separator in a note stays in the note. The file is
UTF-8 (a byte order mark is skipped), a regular file (a FIFO or device is refused,
never waited on) of at most 16 MiB.
`add_jobs` and `remove_jobs` rewrite the file atomically (temporary file, fsync,
rename) under a lock on its folder, keep every comment, and keep the file's mode and
owner (a new file is 0644, so a service user can read it; it holds no secrets). A
symlinked jobs file stays a link: the rewrite goes to its target. The daemon polls
`file_signature` to notice changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watcherd.errors import ConfigError, InvalidJobIdError
from watcherd.model import validate_job_id
from watcherd.textfile import read_regular

#: Job IDs and notes are not secret; the service user must be able to read the file.
NEW_FILE_MODE = 0o644
#: About half a million IDs with notes; a larger file is not a jobs file.
MAX_JOBS_FILE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class JobEntry:
    """One watched job and its optional note."""

    job_id: str
    note: str | None = None


def read_jobs(path: Path) -> list[JobEntry]:
    """The entries of the jobs file in order, first of duplicates kept; [] if it is missing."""
    entries = read_jobs_if_present(path)
    return [] if entries is None else entries


def read_jobs_if_present(path: Path) -> list[JobEntry] | None:
    """The entries of the jobs file in order, first of duplicates kept; None if it is missing."""
    text = _text(path)
    if text is None:
        return None
    entries: dict[str, JobEntry] = {}
    for number, line in enumerate(_split_lines(text), start=1):
        entry = _parse_line(line, path, number)
        if entry is not None and entry.job_id not in entries:
            entries[entry.job_id] = entry
    return list(entries.values())


def _text(path: Path) -> str | None:
    """The file's text without a byte order mark; None if it is missing."""
    try:
        data, _ = read_regular(path, limit=MAX_JOBS_FILE_BYTES, what="jobs file")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read jobs file: {exc.strerror}", path=str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("jobs file is not UTF-8 text", path=str(path), line=line) from None


def _split_lines(text: str) -> list[str]:
    """The file's lines, ended by newlines only (`str.splitlines` also ends one at a
    form feed, NEL or U+2028, which would start an entry no editor shows)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _parse_line(line: str, path: Path, number: int) -> JobEntry | None:
    """The entry on one line, None for blank and comment lines."""
    head, hash_, note = line.partition("#")
    words = head.split()
    if not words:
        return None
    if len(words) > 1:
        raise ConfigError("one job ID a line (notes go after '#')", path=str(path), line=number)
    try:
        job_id = validate_job_id(words[0])
    except InvalidJobIdError as exc:
        raise ConfigError(str(exc), path=str(path), line=number) from None
    return JobEntry(job_id, note.strip() or None if hash_ else None)


def add_jobs(path: Path, ids: Iterable[str], note: str | None = None) -> list[str]:
    """Append the IDs not yet in the file; returns those added (validated first)."""
    wanted = list(dict.fromkeys(validate_job_id(job_id) for job_id in ids))
    suffix = f"  # {' '.join(note.split())}" if note and note.strip() else ""
    path = _target(path)
    with _locked(path):
        present = {entry.job_id for entry in read_jobs(path)}
        added = [job_id for job_id in wanted if job_id not in present]
        if added:
            lines = _lines(path)
            lines.extend(f"{job_id}{suffix}" for job_id in added)
            _write(path, lines)
    return added


def remove_jobs(path: Path, ids: Iterable[str]) -> list[str]:
    """Drop the lines of these IDs (comments stay); returns the IDs that were present."""
    unwanted = {validate_job_id(job_id) for job_id in ids}
    path = _target(path)
    with _locked(path):
        kept, removed = [], []
        for number, line in enumerate(_lines(path), start=1):
            entry = _parse_line(line, path, number)
            if entry is not None and entry.job_id in unwanted:
                if entry.job_id not in removed:
                    removed.append(entry.job_id)
            else:
                kept.append(line)
        if removed:
            _write(path, kept)
    return removed


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of the file, None if it is missing: compare to spot changes.

    A file that cannot be looked at gets (-1, -1, -errno), so that reading it reports why.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return (-1, -1, -(exc.errno or 0))
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _lines(path: Path) -> list[str]:
    """The file's lines (validated), [] if it is missing."""
    text = _text(path)
    if text is None:
        return []
    lines = _split_lines(text)
    for number, line in enumerate(lines, start=1):
        _parse_line(line, path, number)
    return lines


def _target(path: Path) -> Path:
    """The file a rewrite must replace: a symlink's target (the link stays), else `path`."""
    return Path(os.path.realpath(path))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file's folder, so two writers never interleave."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)


def _write(path: Path, lines: list[str]) -> None:
    """Replace the file atomically, keeping its mode and owner."""
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
            fh.flush()
            os.fchmod(fh.fileno(), NEW_FILE_MODE if st is None else st.st_mode & 0o7777)
            if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
