"""Configuration: YAML parsed once into frozen, validated dataclasses.

- `schema`: the dataclasses, the contract every other module reads;
- `secrets`: where secrets come from, read only when needed, never printed;
- `document`: the line-tracking YAML loader behind every `file:line: key` error;
- `load`: the one parser (`run`, `check-config` and SIGHUP reload share it);
- `render`: the effective config as YAML for `check-config`, secrets redacted;
- `watched`: the job IDs a config names (jobs file and inline).
"""

from typing import TYPE_CHECKING, Any

from watcherd.config.load import (
    default_config,
    default_config_path,
    load_config,
    parse_config,
    parse_listen,
)
from watcherd.config.schema import (
    ApiConfig,
    BudgetConfig,
    CommandHook,
    Config,
    HookAction,
    HookConfig,
    JobsConfig,
    Listen,
    LogConfig,
    NotifyHook,
    PollConfig,
    StoreConfig,
    WebhookHook,
)
from watcherd.config.secrets import SecretRef

if TYPE_CHECKING:
    from watcherd.config.render import render_effective
    from watcherd.config.watched import JobsSource

__all__ = [
    "ApiConfig",
    "BudgetConfig",
    "CommandHook",
    "Config",
    "HookAction",
    "HookConfig",
    "JobsConfig",
    "JobsSource",
    "Listen",
    "LogConfig",
    "NotifyHook",
    "PollConfig",
    "SecretRef",
    "StoreConfig",
    "WebhookHook",
    "default_config",
    "default_config_path",
    "load_config",
    "parse_config",
    "parse_listen",
    "render_effective",
]


def __getattr__(name: str) -> Any:
    # `render` (check-config) and `watched` (the jobs file) load on first use: a read
    # command needs neither.
    if name == "render_effective":
        from watcherd.config.render import render_effective

        return render_effective
    if name == "JobsSource":
        from watcherd.config.watched import JobsSource

        return JobsSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
