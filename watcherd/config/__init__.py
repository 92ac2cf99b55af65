"""Configuration: YAML parsed once into frozen, validated dataclasses.

- `schema`: the dataclasses, the contract every other module reads;
- `secrets`: where secrets come from, read only when needed, never printed;
- `document`: the line-tracking YAML loader behind every `file:line: key` error;
- `load`: the one parser (`run`, `check-config` and SIGHUP reload share it);
- `render`: the effective config as YAML for `check-config`, secrets redacted;
- `watched`: the job IDs a config names (jobs file and inline).
"""

from watcherd.config.load import (
    default_config,
    default_config_path,
    load_config,
    parse_config,
    parse_listen,
)
from watcherd.config.render import render_effective
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
