"""Secret references: lookup order, refusals, and that values never leak into output."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcherd.config import SecretRef, parse_config, render_effective
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
