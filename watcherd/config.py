"""Configuration: YAML parsed once into frozen, validated dataclasses.

The dataclasses below are the contract every other module reads. The loader
(`load_config`) lives further down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from watcherd.model import DEFAULT_HOOK_EVENTS


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret comes from; the value is read only when needed, never printed.

    Lookup order: `$CREDENTIALS_DIRECTORY/<credential>`, then `file`, then `env`.
    """

    credential: str | None = None
    file: Path | None = None
    env: str | None = None

    def describe(self) -> str:
        """A redacted description for `check-config`, e.g. `env TOGETHER_API_KEY (set)`."""
        raise NotImplementedError  # filled by the loader below

    def resolve(self) -> str:
        """Read the secret; raises ConfigError if missing, empty or group/world readable."""
        raise NotImplementedError  # filled by the loader below


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
