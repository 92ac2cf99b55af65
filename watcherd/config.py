"""Configuration: YAML parsed once into frozen, validated dataclasses.

The dataclasses below are the contract every other module reads. `load_config` and
`parse_config` (the same parser serves `check-config` and SIGHUP reload) are at the
bottom; the parsing itself lives in `watcherd.configload`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from watcherd.errors import ConfigError
from watcherd.model import DEFAULT_HOOK_EVENTS

#: Used when neither --config nor $WATCHERD_CONFIG names a file, if it exists.
SYSTEM_CONFIG_PATH: Final = Path("/etc/watcherd/config.yaml")
#: The `{fields}` a notify title or template may use, with the type of their sample value.
TEMPLATE_FIELDS: Final[Mapping[str, type]] = {
    "job_id": str,
    "status": str,
    "previous_status": str,
    "model": str,
    "model_output_name": str,
    "train_loss": float,
    "eval_loss": float,
    "best_train_loss": float,
    "best_eval_loss": float,
    "step": int,
    "delivery_id": str,
    "type": str,
}
#: The largest width or precision a template's format spec may ask for.
TEMPLATE_MAX_WIDTH: Final = 1000
_DIGITS: Final = re.compile(r"\d+")
_SECRET_MAX_BYTES: Final = 1 << 20


def spec_too_wide(spec: str) -> bool:
    """True when a format spec asks for a width or precision above TEMPLATE_MAX_WIDTH.

    Every run of digits is a width or a precision (a digit fill is followed by an
    alignment character, so it stands alone): `{job_id:>2000000000}` would otherwise
    build a 2 GB string.
    """
    return any(
        len(run.lstrip("0")) > 6 or int(run) > TEMPLATE_MAX_WIDTH for run in _DIGITS.findall(spec)
    )


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret comes from; the value is read only when needed, never printed.

    Lookup order: `$CREDENTIALS_DIRECTORY/<credential>`, then `file`, then `env`.
    """

    credential: str | None = None
    file: Path | None = None
    env: str | None = None

    def describe(self, environ: Mapping[str, str] | None = None) -> str:
        """A redacted description for `check-config`, e.g. `env TOGETHER_API_KEY (set)`."""
        env = os.environ if environ is None else environ
        parts = []
        if self.credential is not None:
            found = _present(_credential_path(self.credential, env))
            parts.append(f"credential {self.credential} ({'set' if found else 'missing'})")
        if self.file is not None:
            parts.append(f"file {self.file} ({'set' if _present(self.file) else 'missing'})")
        if self.env is not None:
            parts.append(f"env {self.env} ({'set' if env.get(self.env) else 'missing'})")
        return ", ".join(parts) or "none"

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        """Read the secret; raises ConfigError if missing, empty or group/world readable.

        The first source present wins; a present but unusable one is an error, not
        skipped. Errors name the source, never the value.
        """
        env = os.environ if environ is None else environ
        if self.credential is not None:
            path = _credential_path(self.credential, env)
            if path is not None and _present(path):
                return _read_secret_file(path, check_mode=False)
        if self.file is not None and _present(self.file):
            return _read_secret_file(self.file, check_mode=True)
        if self.env is not None and self.env in env:
            value = env[self.env].rstrip("\r\n")
            if not value.strip():
                raise ConfigError(f"secret environment variable {self.env} is empty")
            return value
        raise ConfigError(f"secret not found; looked in {self.describe(env)}")


def _credential_path(name: str, environ: Mapping[str, str]) -> Path | None:
    """`$CREDENTIALS_DIRECTORY/<name>`, or None outside systemd."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    return Path(folder) / name if folder else None


def _present(path: Path | None) -> bool:
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


def _read_secret_file(path: Path, *, check_mode: bool) -> str:
    """A secret file's text without its trailing newline; refuses loose permissions."""
    try:
        with path.open("rb") as fh:
            if check_mode and os.fstat(fh.fileno()).st_mode & 0o044:
                raise ConfigError(
                    f"secret file is group or world readable; run: chmod 600 {path}", path=str(path)
                )
            data = fh.read(_SECRET_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read secret file: {exc.strerror}", path=str(path)) from None
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError("secret file is not UTF-8 text", path=str(path)) from None
    if len(data) > _SECRET_MAX_BYTES:
        raise ConfigError("secret file is larger than 1 MiB", path=str(path))
    if not value.strip():
        raise ConfigError("secret file is empty", path=str(path))
    return value


@dataclass(frozen=True, slots=True)
class ApiConfig:
    base_url: str = "https://api.together.ai"
    api_key: SecretRef = field(
        default_factory=lambda: SecretRef(credential="together-api-key", env="TOGETHER_API_KEY")
    )
    timeout: float = 30.0
    max_concurrency: int = 8
    max_rate: float = 5.0
    max_body_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: Path = Path("watcherd.db")


@dataclass(frozen=True, slots=True)
class JobsConfig:
    file: Path | None = Path("jobs.txt")
    ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PollConfig:
    interval: float = 60.0
    min_interval: float = 10.0
    metrics_interval: float = 300.0  # how often a running job's new metric rows are fetched
    max_backoff: float = 600.0


@dataclass(frozen=True, slots=True)
class CommandHook:
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None


@dataclass(frozen=True, slots=True)
class WebhookHook:
    url: str
    secret: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class NotifyHook:
    """Apprise URLs (they embed tokens, so they are secrets) and a message template."""

    urls: SecretRef
    title: str = "watcherd: {job_id} {status}"
    template: str = "{job_id} is {status} (model {model_output_name}, train loss {train_loss})"


@dataclass(frozen=True, slots=True)
class HookConfig:
    name: str
    on: tuple[str, ...] = DEFAULT_HOOK_EVENTS
    timeout: float = 600.0
    max_attempts: int = 5
    output_cap_bytes: int = 64 * 1024
    command: CommandHook | None = None
    webhook: WebhookHook | None = None
    notify: NotifyHook | None = None

    @property
    def kind(self) -> Literal["command", "webhook", "notify"]:
        if self.command is not None:
            return "command"
        if self.webhook is not None:
            return "webhook"
        return "notify"


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: Literal["auto", "console", "json"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class Config:
    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    hooks: tuple[HookConfig, ...] = ()
    log: LogConfig = field(default_factory=LogConfig)
    metrics_listen: str | None = None  # e.g. "127.0.0.1:9105" for Prometheus text
    source: Path | None = None  # the file this came from, if any


def parse_config(text: str, *, path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Parse config text; `path` names it in errors and anchors relative paths.

    `environ` (default `os.environ`) supplies `STATE_DIRECTORY` for the store default.
    Raises ConfigError (file, line, key path) for anything wrong.
    """
    from watcherd import configload  # configload builds the dataclasses above

    return configload.parse(text, path=path, environ=os.environ if environ is None else environ)


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and parse the config file at `path`; ConfigError if unreadable or invalid."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=str(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("config file is not UTF-8 text", path=str(path), line=line) from None
    return parse_config(text, path=path, environ=environ)


def default_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """All defaults, as if `path` existed and was empty (for a missing default file)."""
    return parse_config("", path=path, environ=environ)


#: The name `watcherd.cli` uses for `default_config`.
defaults_for = default_config


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """`$WATCHERD_CONFIG`, else /etc/watcherd/config.yaml if it exists, else ./watcherd.yaml."""
    env = os.environ if environ is None else environ
    if env.get("WATCHERD_CONFIG"):
        return Path(env["WATCHERD_CONFIG"])
    if _present(SYSTEM_CONFIG_PATH):
        return SYSTEM_CONFIG_PATH
    return Path("watcherd.yaml")


def render_effective(config: Config, *, environ: Mapping[str, str] | None = None) -> str:
    """The effective config as YAML that loads back to the same Config; secrets redacted.

    Secrets are only ever references (a credential, file or variable name); a comment
    header tells which of them are present, never their values.
    """
    from watcherd import configrender

    return configrender.render(config, os.environ if environ is None else environ)
