"""The read commands' config cache: used only when every input of the parse is as it was."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from watcherd.config import ReadConfig, load_config
from watcherd.config.cache import cache_dir

ROOT = Path(__file__).resolve().parent.parent
#: Loads the settings in a fresh process; prints them and whether the YAML parser ran.
PROBE = """
import json, sys
from pathlib import Path
from watcherd.config.cache import load_read_config
view = load_read_config(Path(sys.argv[1]), required=sys.argv[2] == "1")
print(json.dumps([repr(view), "watcherd.config.load" in sys.modules, "yaml" in sys.modules]))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_DIRECTORY", "XDG_CACHE_HOME")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    return env | {"XDG_CACHE_HOME": str(tmp_path / "cache")} | extra


def _probe(path: Path, env: dict[str, str], *, required: bool = True) -> CompletedProcess[str]:
    """PROBE run on `path` in a new process with the environment `env`."""
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(path), "1" if required else "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _load(path: Path, env: dict[str, str], *, required: bool = True) -> tuple[str, bool]:
    """(repr of the settings, whether the parser ran) from a new process."""
    done = _probe(path, env, required=required)
    assert done.returncode == 0, done.stderr
    shown, parsed, yaml = json.loads(done.stdout)
    assert parsed == yaml
    return shown, parsed


def _expected(path: Path, env: dict[str, str]) -> str:
    """The settings a full parse gives."""
    return repr(ReadConfig.of(load_config(path, environ=env)))


def _entries(env: dict[str, str]) -> list[Path]:
    folder = cache_dir(env)
    assert folder is not None
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config naming a database and a jobs file."""
    path = tmp_path / "watcherd.yaml"
    path.write_text("store:\n  path: a.db\njobs:\n  file: jobs.txt\n  ids: [ft-one]\n")
    return path


def test_a_repeat_load_skips_the_parser_and_gives_what_it_gave(
    tmp_path: Path, config: Path
) -> None:
    """The first load parses and writes the entry; the second reads it, same settings."""
    env = _env(tmp_path)
    first, parsed = _load(config, env)
    assert parsed and first == _expected(config, env)
    assert _load(config, env) == (first, False)
    assert "a.db" in first and "ft-one" in first


def test_an_edit_of_the_same_size_and_time_is_parsed_again(tmp_path: Path, config: Path) -> None:
    """The key is the file's bytes: an edit that keeps the size and mtime still counts."""
    env = _env(tmp_path)
    _load(config, env)
    before = config.stat()
    config.write_text(config.read_text().replace("a.db", "b.db"))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    shown, parsed = _load(config, env)
    assert parsed and "b.db" in shown and shown == _expected(config, env)


def test_a_changed_state_directory_is_parsed_again(tmp_path: Path) -> None:
    """A config without store.path follows $STATE_DIRECTORY, cached or not."""
    config = tmp_path / "watcherd.yaml"
    config.write_text("jobs:\n  file: null\n")
    for state in ("/srv/one", "/srv/two", "/srv/one"):
        env = _env(tmp_path, STATE_DIRECTORY=state)
        shown, parsed = _load(config, env)
        assert parsed and shown == _expected(config, env) and f"{state}/watcherd.db" in shown
        assert _load(config, env) == (shown, False)


def test_a_changed_home_moves_a_tilde_path(tmp_path: Path) -> None:
    """`~/x.db` follows $HOME: another HOME is another key."""
    config = tmp_path / "watcherd.yaml"
    config.write_text("store:\n  path: ~/x.db\n")
    for home in (tmp_path / "h1", tmp_path / "h2"):
        shown, parsed = _load(config, _env(tmp_path, HOME=str(home)))
        assert parsed and f"{home}/x.db" in shown


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "not json at all",
        lambda text: text[: len(text) // 2],
        lambda text: text.replace("a.db", "z.db"),  # valid JSON, but the seal no longer fits
        lambda text: "",
    ],
    ids=["garbage", "torn", "edited", "empty"],
)
def test_a_damaged_entry_is_a_miss_and_is_written_again(
    tmp_path: Path, config: Path, damage: Callable[[str], str]
) -> None:
    """A corrupt entry never answers: the config is parsed, and the entry replaced."""
    env = _env(tmp_path)
    good, _ = _load(config, env)
    (entry,) = _entries(env)
    entry.write_text(damage(entry.read_text()))
    assert _load(config, env) == (good, True)
    assert _load(config, env) == (good, False)


def test_an_unusable_cache_folder_still_gives_the_settings(tmp_path: Path, config: Path) -> None:
    """XDG_CACHE_HOME on a regular file: nothing can be cached, every load parses."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = _env(tmp_path) | {"XDG_CACHE_HOME": str(blocker)}
    expected = _expected(config, env)
    assert _load(config, env) == (expected, True)
    assert _load(config, env) == (expected, True)


def test_without_home_or_xdg_nothing_is_cached(tmp_path: Path, config: Path) -> None:
    """No absolute XDG_CACHE_HOME and no HOME: no cache folder, the parse as before."""
    env = _env(tmp_path) | {"XDG_CACHE_HOME": "relative/cache"}
    env.pop("HOME", None)
    assert cache_dir(env) is None
    assert _load(config, env)[1] and _load(config, env)[1]


def test_an_entry_others_may_write_or_own_is_ignored(tmp_path: Path, config: Path) -> None:
    """A group- or world-writable entry, or one of another user, is not trusted."""
    env = _env(tmp_path)
    _load(config, env)
    (entry,) = _entries(env)
    entry.chmod(0o666)
    assert _load(config, env)[1]
    (entry,) = _entries(env)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        os.chown(entry, 65534, 65534)
        assert _load(config, env)[1]


def test_entries_are_private_and_written_whole(tmp_path: Path, config: Path) -> None:
    """Mode 0600 in a 0700 folder, and no temporary file left behind."""
    env = _env(tmp_path)
    _load(config, env)
    (entry,) = _entries(env)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    assert entry.name.startswith("config-") and entry.suffix == ".json"


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def test_no_secret_is_written_to_the_cache(tmp_path: Path) -> None:
    """Secret values, and URLs that may carry a token, never reach the entry."""
    key = _secret_file(tmp_path / "key", "sk-the-api-key-value")
    password = _secret_file(tmp_path / "pw", "the-db-password")
    hook_url = "https://hooks.example.com/services/T0K3N-IN-THE-PATH"
    config = tmp_path / "watcherd.yaml"
    config.write_text(
        f"api:\n  api_key_file: {key}\n"
        "store:\n  url: postgresql://watcherd@db.example.com/watcherd\n"
        f"  password_file: {password}\n"
        f"hooks:\n  - name: page\n    webhook:\n      url: {hook_url}\n"
        "      secret_env: HOOK_SECRET\n"
        "  - name: chat\n    notify:\n      urls_env: NOTIFY_URLS\n"
    )
    env = _env(tmp_path, HOOK_SECRET="whsec-value", NOTIFY_URLS="tgram://bot-token/chat")
    shown, parsed = _load(config, env)
    assert parsed and _load(config, env) == (shown, False)
    text = "".join(p.read_text() for p in _entries(env))
    for secret in ("sk-the-api-key-value", "the-db-password", "T0K3N", "whsec-value", "bot-token"):
        assert secret not in text
    assert "postgresql://watcherd@db.example.com/watcherd" in shown
    assert f"file=PosixPath('{password}')" in shown  # where the password is read from


def test_a_secret_file_made_readable_fails_as_the_full_parse_does(tmp_path: Path) -> None:
    """A secret file later made group-readable: the cache steps aside for the error."""
    key = _secret_file(tmp_path / "key", "sk-value")
    config = tmp_path / "watcherd.yaml"
    config.write_text(f"api:\n  api_key_file: {key}\n")
    env = _env(tmp_path)
    _load(config, env)
    assert _load(config, env)[1] is False
    key.chmod(0o640)
    done = _probe(config, env)
    assert done.returncode != 0
    assert "secret file is group or world readable" in done.stderr


def test_an_implicit_config_appearing_later_is_read(tmp_path: Path) -> None:
    """No ./watcherd.yaml: the defaults (cached too); once the file exists, its settings."""
    config = tmp_path / "watcherd.yaml"
    env = _env(tmp_path)
    defaults, parsed = _load(config, env, required=False)
    assert parsed and f"{tmp_path}/watcherd.db" in defaults
    assert _load(config, env, required=False) == (defaults, False)
    config.write_text("store:\n  path: later.db\n")
    shown, parsed = _load(config, env, required=False)
    assert parsed and "later.db" in shown


def test_a_store_path_that_became_a_folder_fails_as_the_full_parse_does(
    tmp_path: Path, config: Path
) -> None:
    """store.path replaced by a folder after caching: the parse's error, not the entry."""
    env = _env(tmp_path)
    _load(config, env)
    assert _load(config, env)[1] is False
    (tmp_path / "a.db").mkdir()
    done = _probe(config, env)
    assert done.returncode != 0
    assert "is a directory, not a database file" in done.stderr
