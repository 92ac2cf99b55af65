"""The read commands' settings, cached per config file: a repeat `list` skips the parser.

Parsing a config imports PyYAML and builds the whole schema, about as much work as
`watcherd list` does for a thousand jobs. A read command needs only a `ReadConfig`
(the store, the jobs sources, the poll timings), so after a full parse that part is
written to `$XDG_CACHE_HOME/watcherd/config-<digest of the config's path>.json`
(`~/.cache/watcherd/` when XDG_CACHE_HOME is unset), and the next read command with
the same inputs reads it back instead of parsing.

An entry answers only when everything the parse depended on is as it was, checked on
every use:
- the config file's bytes (or its absence, for an implicit `./watcherd.yaml`), its
  absolute path, the environment the parser reads (`ENVIRON_KEYS`) and watcherd's
  version, all under one digest;
- the status (type, mode, size, time) of each secret file and credential the parse
  checked, so a secret file made group-readable fails `list` as it fails `run`, and of
  every watcherd module loaded at the time, so an upgrade or an edit of the parser
  invalidates it; and that the SQLite store path is still not a folder (the parse
  refuses one).
The entry's first line is a digest of the rest: a torn or edited file is a miss, never
an answer. Anything unusual (no cache folder, not writable, corrupt, another user's
file) means a full parse and never an error. Entries hold no secret: the store path or
URL (which never carries a password), the names of where the password comes from, the
jobs file, the inline job IDs and the poll timings. A new entry is written under a
temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from watcherd import __version__
from watcherd.config.reading import (
    JobsConfig,
    PollConfig,
    ReadConfig,
    StoreConfig,
    read_config_file,
)

try:  # hashlib would load OpenSSL first, which costs more than the rest of this module
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - CPython always has _blake2
    from hashlib import blake2b

if TYPE_CHECKING:
    from watcherd.config.schema import Config
    from watcherd.config.secrets import SecretRef

#: Bumped when an entry's layout or meaning changes.
FORMAT: Final = 2
#: What the parser reads from the environment: the default store folder, the home
#: folder that `~` stands for, and systemd's credentials (the secret checks).
ENVIRON_KEYS: Final = ("STATE_DIRECTORY", "HOME", "CREDENTIALS_DIRECTORY")
#: An entry is a few hundred bytes; a config's inline job IDs may make it larger.
MAX_ENTRY_BYTES: Final = 4 << 20
#: `~user`: expanded through the password database, which no key covers: not cached.
_OTHER_HOME: Final = re.compile(rb"~[^/\s\"',\]}]")


def load_read_config(
    path: Path, *, required: bool, environ: Mapping[str, str] | None = None
) -> ReadConfig:
    """The read commands' settings of the config at `path`: from the cache when it holds
    them for exactly these inputs, else from a full parse (and then cached).

    `required`: the file must exist (it was named); otherwise a missing file means the
    defaults, as `default_config` gives them. Errors are the full parse's ConfigErrors.
    """
    env = os.environ if environ is None else environ
    data = read_config_file(path) if required or path.exists() else None
    key = _key(path, data, env)
    entry = _entry_path(path, env)
    found = None if entry is None else _lookup(entry, key)
    if found is not None:
        return found._replace(source=path)
    from watcherd.config.load import config_from_bytes, default_config

    if data is None:
        config = default_config(path, environ=env)
    else:
        config = config_from_bytes(data, path=path, environ=env)
    view = ReadConfig.of(config)
    if entry is not None and (data is None or not _OTHER_HOME.search(data)):
        _write(entry, _entry_text(key, _dependencies(config, env), view))
    return view


def cache_dir(environ: Mapping[str, str]) -> Path | None:
    """`$XDG_CACHE_HOME/watcherd`, else `$HOME/.cache/watcherd`; None without either
    (relative paths do not count, as the XDG specification says)."""
    base = environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(base):
        return Path(base, "watcherd")
    home = environ.get("HOME", "")
    return Path(home, ".cache", "watcherd") if os.path.isabs(home) else None


def _entry_path(path: Path, environ: Mapping[str, str]) -> Path | None:
    folder = cache_dir(environ)
    if folder is None:
        return None
    name = blake2b(os.fsencode(path.absolute()), digest_size=16).hexdigest()
    return folder / f"config-{name}.json"


def _key(path: Path, data: bytes | None, environ: Mapping[str, str]) -> str:
    """The digest of every input of the parse but the files it only looked at."""
    inputs = [FORMAT, __version__, str(path.absolute()), [environ.get(k) for k in ENVIRON_KEYS]]
    digest = blake2b(json.dumps([*inputs, data is not None]).encode("ascii"), digest_size=32)
    digest.update(b"\0" + (data or b""))
    return digest.hexdigest()


def _status(path: str) -> list[int] | int | None:
    """What a file's status says about it: None if absent, -1 if it cannot be looked at."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return -1
    return [st.st_mode, st.st_size, st.st_mtime_ns]


def _dependencies(config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
    """The files the parse's outcome depends on, with their status as it is now: the
    secret files and watcherd's modules."""
    paths = [p for _, ref in config.secrets() for p in _secret_paths(ref, environ)]
    paths += sorted({m.__file__ for m in _watcherd_modules() if m.__file__})
    return {p: _status(p) for p in paths}


def _unchanged(dependencies: dict[str, Any]) -> bool:
    """True while every file is as it was recorded."""
    return all(_status(p) == s for p, s in dependencies.items())


def _a_folder(store: StoreConfig) -> bool:
    """True if a SQLite store.path is now a folder, which the parse refuses (or if that
    cannot be told); the database file's own size and time change with every poll."""
    try:
        return store.url is None and store.path.is_dir()
    except OSError:
        return True


def _secret_paths(ref: SecretRef, environ: Mapping[str, str]) -> Iterator[str]:
    """The files `SecretRef.check` looks at: the credential, then the secret file."""
    if ref.file is None:
        return
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if folder and ref.credential is not None:
        yield str(Path(folder) / ref.credential)
    yield str(ref.file)


def _watcherd_modules() -> Iterator[Any]:
    for name, module in list(sys.modules.items()):
        if name == "watcherd" or name.startswith("watcherd."):
            yield module


def _entry_text(key: str, dependencies: dict[str, Any], view: ReadConfig) -> str:
    store, jobs = view.store, view.jobs
    ref = store.password
    body = {
        "key": key,
        "dependencies": dependencies,
        "store": [str(store.path), store.url, store.lease, None if ref is None else _ref(ref)],
        "jobs": [None if jobs.file is None else str(jobs.file), list(jobs.ids)],
        "poll": list(view.poll),
    }
    text = json.dumps(body, separators=(",", ":"))
    return f"{_seal(text)}\n{text}"


def _ref(ref: SecretRef) -> list[str | None]:
    """Where a secret comes from (names and a path, never the value)."""
    return [ref.credential, None if ref.file is None else str(ref.file), ref.env]


def _seal(text: str) -> str:
    return blake2b(text.encode("ascii"), digest_size=32).hexdigest()


def _lookup(entry: Path, key: str) -> ReadConfig | None:
    """The settings `entry` holds for `key`, if it is intact and still holds."""
    text = _read_own(entry)
    if text is None:
        return None
    seal, _, body = text.partition("\n")
    try:
        if seal != _seal(body):
            return None
        found = json.loads(body)
        if found["key"] != key or not _unchanged(found["dependencies"]):
            return None
        settings = _settings(found)
        return None if _a_folder(settings.store) else settings
    except (ValueError, KeyError, TypeError, IndexError, UnicodeError):
        return None


def _settings(found: dict[str, Any]) -> ReadConfig:
    path, url, lease, ref = found["store"]
    password = None if ref is None else _secret_ref(*ref)
    file, ids = found["jobs"]
    return ReadConfig(
        store=StoreConfig(Path(path), url, password, lease),
        jobs=JobsConfig(None if file is None else Path(file), tuple(ids)),
        poll=PollConfig(*found["poll"]),
        source=None,
    )


def _secret_ref(credential: str | None, file: str | None, env: str | None) -> SecretRef:
    from watcherd.config.secrets import SecretRef  # a PostgreSQL password only

    return SecretRef(credential=credential, file=None if file is None else Path(file), env=env)


def _read_own(entry: Path) -> str | None:
    """The text of `entry` if it is a regular file of this user that no one else may
    write; else (or if it cannot be read) None."""
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, "rb", closefd=True) as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        try:
            return fh.read(MAX_ENTRY_BYTES).decode("ascii")
        except (OSError, UnicodeError):
            return None


def _write(entry: Path, text: str) -> None:
    """Put `text` at `entry` all at once (mode 0600, folder 0700); quietly nothing if the
    folder cannot be made or written."""
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(os.open(tmp, flags, 0o600), "w", encoding="ascii") as fh:
            fh.write(text)
        os.replace(tmp, entry)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
