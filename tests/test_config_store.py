"""The `store:` section: a SQLite path or a PostgreSQL URL with its password reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cliharness import watcherd
from watcherd.config import parse_config, render_effective
from watcherd.config.secrets import SecretRef
from watcherd.errors import ConfigError

PATH = Path("/etc/watcherd/config.yaml")
URL = "postgresql://watcherd@db.internal:5432/watcherd"


def test_a_url_selects_postgresql_with_its_password_and_lease() -> None:
    """store.url switches the backend; the password is a reference; lease is a duration."""
    text = f"store:\n  url: {URL}\n  password_env: PGPASS_W\n  lease: 20s\n"
    store = parse_config(text, path=PATH, environ={}).store
    assert (store.backend, store.url, store.lease) == ("postgresql", URL, 20.0)
    assert store.password == SecretRef(env="PGPASS_W")
    assert parse_config("", path=PATH, environ={}).store.backend == "sqlite"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("store:\n  url: mysql://h/db\n", "config.yaml:2: store.url: must be a postgresql://"),
        ("store:\n  url: postgresql://h\n", "config.yaml:2: store.url: must be a postgresql://"),
        ("store:\n  url: postgresql://h:x/db\n", "config.yaml:2: store.url: must be a postgres"),
        ("store:\n  url: postgresql://u:pw@h/db\n", "config.yaml:2: store.url: secrets never"),
        (
            "store:\n  url: postgresql://h/db?password=pw\n",
            "config.yaml:2: store.url: secrets never",
        ),
        (f"store:\n  url: {URL}\n  password: pw\n", "config.yaml:3: store.password: secrets"),
        (f"store:\n  url: {URL}\n  lease: 1s\n", "config.yaml:3: store.lease: must be between"),
        ("store:\n  lease: 30s\n", "config.yaml:2: store.lease: applies to a PostgreSQL store"),
    ],
)
def test_bad_store_settings_name_file_line_and_key(text: str, message: str) -> None:
    """A bad URL, an inline password or a lease out of range is a ConfigError at its line."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, path=PATH, environ={})
    assert str(caught.value).startswith(f"/etc/watcherd/{message}")
    assert "pw" not in str(caught.value).replace("password", "")


def test_the_effective_config_shows_the_backend_and_loads_back() -> None:
    """check-config's text names the backend, masks nothing needlessly and parses back equal."""
    text = f"store:\n  url: {URL}\n  password_credential: pg-password\n"
    config = parse_config(text, path=PATH, environ={})
    shown = render_effective(config, environ={})
    assert f"# store backend: postgresql ({URL})" in shown
    assert parse_config(shown, path=PATH, environ={}).store == config.store
    sqlite = render_effective(parse_config("", path=PATH, environ={}), environ={})
    assert "# store backend: sqlite (/etc/watcherd/watcherd.db)" in sqlite


def test_check_config_exits_78_on_a_bad_url(tmp_path: Path) -> None:
    """`watcherd check-config` on a bad store.url exits 78 naming file:line."""
    config = tmp_path / "c.yaml"
    config.write_text("store:\n  url: postgresql://u:hunter2@h/db\n")
    argv = [sys.executable, "-m", "watcherd", "check-config", "--config", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 78
    assert f"{config}:2: store.url" in done.stderr and "hunter2" not in done.stderr


@pytest.mark.parametrize(
    "command", [["list"], ["show", "ft-abc"], ["check-config"], ["run", "--once"]]
)
def test_a_directory_as_store_path_is_a_config_error(tmp_path: Path, command: list[str]) -> None:
    """store.path naming a directory: exit 78 naming file:line, the key and the path (it
    said "disk I/O error" or "Is a directory", exit 1)."""
    (tmp_path / "db").mkdir()
    config = tmp_path / "c.yaml"
    config.write_text("jobs:\n  ids: [ft-abc]\nstore:\n  path: db\n")
    env = {"TOGETHER_API_KEY": "k", "WATCHERD_CONFIG": ""}
    done = watcherd(config, *command, env=env)
    assert done.returncode == 78, done.stderr
    want = f"{config}:4: store.path: {tmp_path / 'db'} is a directory, not a database file"
    assert want in done.stderr.splitlines()[-1]


def test_a_directory_at_the_default_store_path_names_no_missing_file(tmp_path: Path) -> None:
    """No config file and ./watcherd.db a directory: the error says defaults were used."""
    (tmp_path / "watcherd.db").mkdir()
    done = watcherd(None, "list", env={"WATCHERD_CONFIG": ""}, cwd=tmp_path)
    assert done.returncode == 78
    assert done.stderr.startswith(
        "watcherd: configuration error: defaults (no watcherd.yaml): store.path: the default"
    )
