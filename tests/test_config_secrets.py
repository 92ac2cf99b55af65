"""Secret references: lookup order, refusals, and that values never leak into output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import start_daemon, write_config
from watcherd.config import SecretRef, WebhookHook, parse_config, render_effective
from watcherd.config.schema import SYSTEM_CONFIG_PATH
from watcherd.config.secrets import redact_url
from watcherd.errors import ConfigError

VALUE = "sk-live-do-not-print"


def _secret_file(folder: Path, name: str, text: str, mode: int = 0o600) -> Path:
    """Write a secret file with the given mode."""
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_credential_beats_file_beats_env(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY/<name> first, then the file, then the variable."""
    creds = tmp_path / "creds"
    creds.mkdir()
    _secret_file(creds, "key", "from-credential\n")
    file = _secret_file(tmp_path, "key.txt", "from-file\n")
    ref = SecretRef(credential="key", file=file, env="KEY")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "KEY": "from-env"}
    assert ref.resolve(env) == "from-credential"
    assert ref.resolve({"KEY": "from-env"}) == "from-file"
    file.unlink()
    assert ref.resolve({"KEY": "from-env\n"}) == "from-env"


def test_trailing_newlines_stripped_inner_kept(tmp_path: Path) -> None:
    """Only the trailing newline goes; the value is otherwise kept verbatim."""
    file = _secret_file(tmp_path, "s", "a b\nc\r\n")
    assert SecretRef(file=file).resolve({}) == "a b\nc"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_readable_file_refused_with_chmod_hint(tmp_path: Path, mode: int) -> None:
    """A group- or world-readable secret file is refused with a `chmod 600` hint."""
    file = _secret_file(tmp_path, "s", VALUE, mode)
    with pytest.raises(ConfigError) as info:
        SecretRef(file=file).resolve({})
    assert f"chmod 600 {file}" in str(info.value)
    assert VALUE not in str(info.value)


@pytest.mark.parametrize("text", ["", "\n", "  \n"])
def test_empty_file_refused(tmp_path: Path, text: str) -> None:
    """An empty (or blank) secret file is refused, naming the file."""
    file = _secret_file(tmp_path, "s", text)
    with pytest.raises(ConfigError, match="secret file is empty") as info:
        SecretRef(file=file).resolve({})
    assert info.value.path == str(file)


def test_empty_env_refused() -> None:
    """A set but empty variable is refused, naming the variable."""
    with pytest.raises(ConfigError, match="secret environment variable KEY is empty"):
        SecretRef(env="KEY").resolve({"KEY": "\n"})


def test_missing_everywhere_lists_sources() -> None:
    """With no source present the error lists where it looked."""
    with pytest.raises(ConfigError) as info:
        SecretRef(credential="c", file=Path("/nonexistent/s"), env="KEY").resolve({})
    message = str(info.value)
    assert "credential c (missing)" in message and "env KEY (missing)" in message


def test_describe_is_redacted(tmp_path: Path) -> None:
    """describe() tells set or missing and never the value."""
    file = _secret_file(tmp_path, "s", VALUE)
    text = SecretRef(file=file, env="KEY").describe({"KEY": VALUE})
    assert text == f"file {file} (set), env KEY (set)"


def test_secret_values_never_in_config_text(tmp_path: Path) -> None:
    """str(config) and render_effective hold references, never secret values."""
    file = _secret_file(tmp_path, "key", VALUE)
    text = f"api: {{api_key_file: {file}}}\nhooks:\n  - name: w\n"
    text += "    webhook: {url: 'https://x', secret_env: WH}\n"
    env = {"WH": VALUE, "TOGETHER_API_KEY": VALUE}
    config = parse_config(text, path=tmp_path / "c.yaml", environ=env)
    assert config.api.api_key.resolve(env) == VALUE
    assert VALUE not in str(config) and VALUE not in repr(config)
    assert VALUE not in render_effective(config, environ=env)


URL_CONFIG = (
    "api:\n  base_url: 'http://alice:pa55word@127.0.0.1:9/v'\n"
    "hooks:\n  - name: w\n    webhook:\n"
    "      url: 'https://bob:hunter2@hooks.example/in?sig=s1g-456&api_key=k3y-789&v=1'\n"
)
URL_SECRETS = ("pa55word", "alice", "hunter2", "s1g-456", "k3y-789")


def test_check_config_masks_credentials_in_urls(tmp_path: Path) -> None:
    """`check-config` masks userinfo and secret-looking query values in every URL it prints."""
    config = tmp_path / "c.yaml"
    config.write_text(URL_CONFIG)
    done = watcherd(config, "check-config")
    assert done.returncode == 0, done.stderr
    assert not [s for s in URL_SECRETS if s in done.stdout], done.stdout
    assert "base_url: http://***@127.0.0.1:9/v\n" in done.stdout
    assert "https://***@hooks.example/in?sig=***&api_key=***&v=1" in done.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h/p?a=1&b=2", "https://h/p?a=1&b=2"),
        ("https://u@h/", "https://***@h/"),
        ("https://h/p?access_token=x&Password=y&X-Amz-Signature=z", None),
        ("https://h/p#access_token=x", "https://h/p#access_token=***"),
        ("ftp://u:p@h:21/?secret=s", "ftp://***@h:21/?secret=***"),
    ],
)
def test_redact_url(url: str, shown: str | None) -> None:
    """Userinfo and the values of token-, key-, secret-, password- and sig-like names go."""
    masked = redact_url(url)
    if shown is not None:
        assert masked == shown
    assert not {"x", "y", "z"} & set(masked.split("=")[1:]), masked


def test_an_invalid_url_error_masks_its_credentials() -> None:
    """The error for a bad URL quotes it without the password or token it holds."""
    with pytest.raises(ConfigError) as info:
        parse_config("api:\n  base_url: 'ftp://u:pa55@h/?token=t0k'\n", path=Path("c.yaml"))
    assert "pa55" not in str(info.value) and "t0k" not in str(info.value)
    assert "ftp://***@h/?token=***" in str(info.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("api:\n  api_key_file: {file}\n", "api.api_key_file"),
        (
            "hooks:\n  - name: w\n    webhook:\n      url: https://h/\n      secret_file: {file}\n",
            "hooks[0].webhook.secret_file",
        ),
        (
            "hooks:\n  - name: n\n    notify:\n      urls_file: {file}\n",
            "hooks[0].notify.urls_file",
        ),
    ],
)
def test_check_config_refuses_a_readable_secret_file(
    tmp_path: Path, section: str, key: str
) -> None:
    """`check-config` exits 78 on a 0644 secret file, naming file:line, key and `chmod 600`."""
    secret = _secret_file(tmp_path, "s", VALUE, 0o644)
    config = tmp_path / "c.yaml"
    config.write_text(section.format(file=secret))
    done = watcherd(config, "check-config")
    line = section.count("\n")
    assert done.returncode == 78, done.stdout
    assert f"{config}:{line}: {key}: " in done.stderr
    assert f"chmod 600 {secret}" in done.stderr and VALUE not in done.stderr


def test_run_refuses_a_readable_webhook_secret_before_starting(tmp_path: Path) -> None:
    """`run` with a 0644 webhook secret_file exits 78 at once, with file:line; no database."""
    secret = _secret_file(tmp_path, "s", VALUE, 0o644)
    hooks = f"hooks:\n  - name: w\n    webhook: {{url: 'https://h/', secret_file: {secret}}}\n"
    config = write_config(tmp_path, "http://127.0.0.1:9", ["ft-x"], hooks=hooks)
    assert start_daemon(config).wait(timeout=30) == 78
    text = (tmp_path / "daemon.log").read_text()
    assert f"{config}:" in text and "hooks[0].webhook.secret_file" in text and "chmod 600" in text
    assert not (tmp_path / "watcherd.db").exists()


def test_credentials_directory_skips_the_mode_check(tmp_path: Path) -> None:
    """A credential from $CREDENTIALS_DIRECTORY is not mode-checked, nor the file it shadows."""
    creds = tmp_path / "creds"
    creds.mkdir()
    _secret_file(creds, "wh", VALUE, 0o644)
    loose = _secret_file(tmp_path, "s", VALUE, 0o644)
    text = "hooks:\n  - name: w\n    webhook:\n      url: https://h/\n      secret_credential: wh\n"
    text += f"      secret_file: {loose}\n"
    config = parse_config(
        text, path=tmp_path / "c.yaml", environ={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    action = config.hooks[0].action
    assert isinstance(action, WebhookHook) and action.secret is not None
    assert action.secret.resolve({"CREDENTIALS_DIRECTORY": str(creds)}) == VALUE
    with pytest.raises(ConfigError, match="chmod 600"):
        parse_config(text, path=tmp_path / "c.yaml", environ={})


def test_a_secret_that_is_not_a_regular_file_is_refused_at_load(tmp_path: Path) -> None:
    """A FIFO as secret file is a config error at load, not a hang when it is read."""
    fifo = tmp_path / "s"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file") as info:
        parse_config(f"api:\n  api_key_file: {fifo}\n", path=Path("c.yaml"), environ={})
    assert info.value.line == 2 and info.value.key == "api.api_key_file"


@pytest.mark.parametrize(
    "command", [["run", "--once"], ["wait", "ft-a"], ["cancel", "ft-a", "--yes"]]
)
def test_a_missing_key_without_a_config_file_names_no_such_file(
    tmp_path: Path, command: list[str]
) -> None:
    """With no config file (defaults) and no key, the error says so, instead of pointing at a
    `watcherd.yaml` that does not exist; exit 78."""
    if SYSTEM_CONFIG_PATH.exists():
        pytest.skip("this machine has /etc/watcherd/config.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("TOGETHER_API_KEY", "WATCHERD_CONFIG")}
    done = subprocess.run(
        [sys.executable, "-m", "watcherd", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 78
    assert done.stderr.startswith(
        "watcherd: configuration error: defaults (no watcherd.yaml): api.api_key: secret not found"
    ), done.stderr
