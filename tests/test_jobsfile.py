"""The jobs file: reading, adding, removing, atomic rewrites and change detection."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from watcherd.errors import ConfigError, InvalidJobIdError
from watcherd.jobsfile import JobEntry, add_jobs, file_signature, read_jobs, remove_jobs

SAMPLE = "# watched jobs\n\nft-abc  # first run\nft-def\n  ft-abc # duplicate\n"


def test_missing_file_reads_empty(tmp_path: Path) -> None:
    """A missing jobs file means no jobs, not an error."""
    assert read_jobs(tmp_path / "jobs.txt") == []


def test_read_comments_notes_and_duplicates(tmp_path: Path) -> None:
    """Comments and blank lines are skipped, notes kept, the first duplicate wins."""
    path = tmp_path / "jobs.txt"
    path.write_text(SAMPLE)
    assert read_jobs(path) == [JobEntry("ft-abc", "first run"), JobEntry("ft-def")]


@pytest.mark.parametrize(
    ("line", "message"),
    [("abc", "must start with 'ft-'"), ("ft-a ft-b", "one job ID a line"), ("ft-$x", "only")],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    """A bad line is a ConfigError at `file:line`."""
    path = tmp_path / "jobs.txt"
    path.write_text(f"ft-ok\n# c\n{line}\n")
    with pytest.raises(ConfigError, match=message) as info:
        read_jobs(path)
    assert str(info.value).startswith(f"{path}:3: ")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e"])
def test_only_newlines_end_a_line(tmp_path: Path, separator: str) -> None:
    """A Unicode line or paragraph separator (or VT, FF, NEL) inside a note is part of the
    note, as an editor shows it: it starts no hidden entry, and errors keep their line."""
    path = tmp_path / "jobs.txt"
    path.write_text(f"ft-a  # x{separator}ft-hidden\r\nft-b\rft-c\n\nft-$bad\n", newline="")
    with pytest.raises(ConfigError) as info:
        read_jobs(path)
    assert str(info.value).startswith(f"{path}:5: invalid job ID 'ft-$bad'")
    path.write_text(f"ft-a  # x{separator}ft-hidden\r\nft-b\rft-c\n", newline="")
    assert [e.job_id for e in read_jobs(path)] == ["ft-a", "ft-b", "ft-c"]
    assert remove_jobs(path, ["ft-b"]) == ["ft-b"]
    assert path.read_bytes().decode() == f"ft-a  # x{separator}ft-hidden\nft-c\n"


def test_add_creates_a_readable_file_and_is_idempotent(tmp_path: Path) -> None:
    """The first add creates a 0644 file (readable by the service); adding again changes nothing."""
    path = tmp_path / "jobs.txt"
    assert add_jobs(path, ["ft-a", "ft-b", "ft-a"], note="sweep\n2") == ["ft-a", "ft-b"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    before = path.read_text()
    assert add_jobs(path, ["ft-b", "ft-a"]) == []
    assert path.read_text() == before == "ft-a  # sweep 2\nft-b  # sweep 2\n"
    assert read_jobs(path) == [JobEntry("ft-a", "sweep 2"), JobEntry("ft-b", "sweep 2")]


def test_add_keeps_comments_and_mode(tmp_path: Path) -> None:
    """Adding appends, keeps every existing line and the file's mode."""
    path = tmp_path / "jobs.txt"
    path.write_text(SAMPLE)
    path.chmod(0o644)
    assert add_jobs(path, ["ft-new"]) == ["ft-new"]
    assert path.read_text() == SAMPLE + "ft-new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_add_validates_before_writing(tmp_path: Path) -> None:
    """One invalid ID rejects the whole add and leaves the file untouched."""
    path = tmp_path / "jobs.txt"
    path.write_text("ft-a\n")
    with pytest.raises(InvalidJobIdError):
        add_jobs(path, ["ft-b", "$(touch /tmp/x)"])
    assert path.read_text() == "ft-a\n"


def test_remove_keeps_comments(tmp_path: Path) -> None:
    """Removing drops every line of the ID, keeps comments, and reports what was there."""
    path = tmp_path / "jobs.txt"
    path.write_text(SAMPLE)
    assert remove_jobs(path, ["ft-abc", "ft-zzz"]) == ["ft-abc"]
    assert path.read_text() == "# watched jobs\n\nft-def\n"
    assert remove_jobs(path, ["ft-abc"]) == []
    assert remove_jobs(tmp_path / "missing.txt", ["ft-abc"]) == []


def test_rewrite_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """A rewrite replaces the file by rename (new inode) and leaves nothing behind."""
    path = tmp_path / "jobs.txt"
    add_jobs(path, ["ft-a"])
    inode = path.stat().st_ino
    add_jobs(path, ["ft-b"])
    assert path.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.txt"]


def test_refuses_to_rewrite_a_broken_file(tmp_path: Path) -> None:
    """An add to a file with a bad line fails rather than rewriting around it."""
    path = tmp_path / "jobs.txt"
    path.write_text("garbage\n")
    with pytest.raises(ConfigError):
        add_jobs(path, ["ft-a"])
    assert path.read_text() == "garbage\n"


def test_file_signature_detects_changes(tmp_path: Path) -> None:
    """The signature is None when missing and changes on every rewrite."""
    path = tmp_path / "jobs.txt"
    assert file_signature(path) is None
    add_jobs(path, ["ft-a"])
    first = file_signature(path)
    assert first is not None and file_signature(path) == first
    remove_jobs(path, ["ft-a"])
    assert file_signature(path) not in (None, first)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 BOM (as some editors write) is skipped, as the config loader does; edits work."""
    path = tmp_path / "jobs.txt"
    path.write_bytes(b"\xef\xbb\xbfft-abc  # first\nft-def\n")
    assert read_jobs(path) == [JobEntry("ft-abc", "first"), JobEntry("ft-def")]
    assert remove_jobs(path, ["ft-abc"]) == ["ft-abc"]
    assert add_jobs(path, ["ft-new"]) == ["ft-new"]
    assert read_jobs(path) == [JobEntry("ft-def"), JobEntry("ft-new")]


def test_add_and_remove_write_through_a_symlink(tmp_path: Path) -> None:
    """Through a symlinked jobs file, the link stays and its target gets the change."""
    target = tmp_path / "real" / "jobs.txt"
    target.parent.mkdir()
    target.write_text("ft-a\n")
    link = tmp_path / "jobs.txt"
    link.symlink_to(target)
    assert add_jobs(link, ["ft-b"]) == ["ft-b"]
    assert remove_jobs(link, ["ft-a"]) == ["ft-a"]
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text() == "ft-b\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["jobs.txt"]


def test_a_dangling_symlink_is_created_at_its_target(tmp_path: Path) -> None:
    """`add` through a link whose target does not exist yet creates the target."""
    link = tmp_path / "jobs.txt"
    link.symlink_to(tmp_path / "target.txt")
    assert add_jobs(link, ["ft-a"]) == ["ft-a"]
    assert link.is_symlink() and (tmp_path / "target.txt").read_text() == "ft-a\n"


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A FIFO as jobs file is a ConfigError at once (opening it for reading would block)."""
    fifo = tmp_path / "jobs.txt"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"jobs file is not a regular file \(it is a FIFO\)"):
        read_jobs(fifo)


def test_a_jobs_file_over_16_mib_is_refused(tmp_path: Path) -> None:
    """A jobs file larger than 16 MiB is a ConfigError, not read whole."""
    path = tmp_path / "jobs.txt"
    with path.open("wb") as fh:
        fh.truncate(16 * 1024 * 1024 + 1)
    with pytest.raises(ConfigError, match="jobs file is larger than 16 MiB"):
        read_jobs(path)


def test_list_with_a_fifo_jobs_file_exits_at_once(tmp_path: Path) -> None:
    """`watcherd list` with a FIFO as jobs file exits 78 naming it, instead of hanging."""
    os.mkfifo(tmp_path / "jobs.txt")
    config = tmp_path / "c.yaml"
    config.write_text("jobs: {file: jobs.txt}\n")
    argv = [sys.executable, "-m", "watcherd", "list", "--config", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    assert done.returncode == 78
    assert f"{tmp_path / 'jobs.txt'}: jobs file is not a regular file" in done.stderr
