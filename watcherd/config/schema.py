"""The configuration schema: frozen records every other module reads (`reading` holds
the store, jobs and poll sections, which the read commands load without this module).

`watcherd.config.load` builds them from YAML (the same parser serves `run`,
`check-config` and SIGHUP reload); nothing else constructs them from text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from watcherd.config.alerting import AlertsConfig
from watcherd.config.reading import SYSTEM_CONFIG_PATH as SYSTEM_CONFIG_PATH
from watcherd.config.reading import JobsConfig as JobsConfig
from watcherd.config.reading import PollConfig as PollConfig
from watcherd.config.reading import StoreConfig as StoreConfig
from watcherd.config.secrets import SecretRef
from watcherd.model import DEFAULT_HOOK_EVENTS
from watcherd.retry import DEFAULT_MAX_RETRY_AFTER

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
    "reason": str,
    "price": str,
    "token_count": int,
    "queue_time": str,
    "training_time": str,
    "upload_time": str,
    "total_time": str,
    "model_object_id": str,
    "adapter_output_name": str,
    "adapter_object_id": str,
    "wandb_url": str,
    "checkpoint_path": str,
    "model_path": str,
    "loss_sparkline": str,
    "rule": str,
    "message": str,
    "value": float,
    "threshold": float,
    "eta": str,
    "eta_source": str,
}
#: The largest width or precision a template's format spec may ask for.
TEMPLATE_MAX_WIDTH: Final = 1000
_DIGITS: Final = re.compile(r"\d+")


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
class ApiConfig:
    """`api:`: where the service is, the key, and the limits every request obeys."""

    base_url: str = "https://api.together.ai"
    api_key: SecretRef = field(
        default_factory=lambda: SecretRef(credential="together-api-key", env="TOGETHER_API_KEY")
    )
    timeout: float = 30.0  # overall deadline of one request, body included
    max_concurrency: int = 8  # requests in flight, all jobs together
    max_rate: float = 5.0  # requests per second, all jobs together
    max_body_bytes: int = 64 * 1024 * 1024  # after decompression
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER  # longest Retry-After pause honoured


@dataclass(frozen=True, slots=True)
class CommandHook:
    """A hook that runs a program: argv (never a shell), extra environment, folder."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None


@dataclass(frozen=True, slots=True)
class WebhookHook:
    """A hook that POSTs the payload, signed per Standard Webhooks when a secret is set."""

    url: str
    secret: SecretRef | None = None


@dataclass(frozen=True, slots=True)
class NotifyHook:
    """Apprise URLs (they embed tokens, so they are secrets) and a message template."""

    urls: SecretRef
    title: str = "watcherd: {job_id} {status}"
    template: str = "{job_id} is {status} (model {model_output_name}, train loss {train_loss})"


#: What a hook does: exactly one action, checked by the parser and by mypy.
HookAction = CommandHook | WebhookHook | NotifyHook


@dataclass(frozen=True, slots=True)
class HookConfig:
    """One entry of `hooks:`: a name, the events it subscribes to, limits and its action."""

    name: str
    action: HookAction
    on: tuple[str, ...] = DEFAULT_HOOK_EVENTS
    timeout: float = 600.0
    max_attempts: int = 5
    output_cap_bytes: int = 64 * 1024

    @property
    def kind(self) -> Literal["command", "webhook", "notify"]:
        """The action's kind, as spelled in the config."""
        match self.action:
            case CommandHook():
                return "command"
            case WebhookHook():
                return "webhook"
            case NotifyHook():
                return "notify"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """`log:`: console lines on a terminal, JSON lines otherwise (`auto`)."""

    format: Literal["auto", "console", "json"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """`budget:`: spend limits in dollars per UTC day and month (None: no limit).

    A period whose spend passes its limit fires `budget.exceeded` once (see
    `watcherd.spend` for how spend is counted).
    """

    daily: float | None = None
    monthly: float | None = None

    def limits(self) -> dict[str, float]:
        """The limits set, by period name (`daily`, `monthly`)."""
        given = {"daily": self.daily, "monthly": self.monthly}
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Listen:
    """`metrics_listen:`, parsed once: a loopback host and a port to serve Prometheus on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; `source` is the file it came from, if any."""

    api: ApiConfig = field(default_factory=ApiConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    hooks: tuple[HookConfig, ...] = ()
    log: LogConfig = field(default_factory=LogConfig)
    metrics_listen: Listen | None = None  # the Prometheus endpoint, off by default
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    allow_cancel: bool = False  # the second key that arms `action: cancel`
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    source: Path | None = None

    def secrets(self) -> list[tuple[str, SecretRef]]:
        """Every secret reference in the config, with its key path."""
        found = [("api.api_key", self.api.api_key)]
        if self.store.password is not None:
            found.append(("store.password", self.store.password))
        for i, hook in enumerate(self.hooks):
            match hook.action:
                case WebhookHook(secret=SecretRef() as secret):
                    found.append((f"hooks[{i}].webhook.secret", secret))
                case NotifyHook(urls=urls):
                    found.append((f"hooks[{i}].notify.urls", urls))
        return found
