"""Configuration: YAML parsed once into frozen, validated records.

- `schema`: the dataclasses, the contract every other module reads;
- `reading`: the part the read commands need (store, jobs, poll), without YAML;
- `cache`: that part cached per config file, so `list` and friends skip the parser;
- `secrets`: where secrets come from, read only when needed, never printed;
- `document`: the line-tracking YAML loader behind every `file:line: key` error;
- `load`: the one parser (`run`, `check-config` and SIGHUP reload share it);
- `render`: the effective config as YAML for `check-config`, secrets redacted;
- `watched`: the job IDs a config names (jobs file and inline).

Every name below loads its module on first use: a read command that finds its
settings in the cache imports neither PyYAML nor the schema.
"""

from typing import TYPE_CHECKING

from watcherd.lazy import lazy_attributes

if TYPE_CHECKING:
    from watcherd.config.load import default_config, load_config, parse_config, parse_listen
    from watcherd.config.reading import (
        JobsConfig,
        PollConfig,
        ReadConfig,
        StoreConfig,
        default_config_path,
    )
    from watcherd.config.render import render_effective
    from watcherd.config.schema import (
        ApiConfig,
        BudgetConfig,
        CommandHook,
        Config,
        HookAction,
        HookConfig,
        Listen,
        LogConfig,
        NotifyHook,
        WebhookHook,
    )
    from watcherd.config.secrets import SecretRef
    from watcherd.config.watched import JobsSource

#: Each public name and the module that defines it.
_HOME = {
    **dict.fromkeys(("default_config", "load_config", "parse_config", "parse_listen"), "load"),
    **dict.fromkeys(
        ("JobsConfig", "PollConfig", "ReadConfig", "StoreConfig", "default_config_path"), "reading"
    ),
    **dict.fromkeys(
        ("ApiConfig", "BudgetConfig", "CommandHook", "Config", "HookAction", "HookConfig"),
        "schema",
    ),
    **dict.fromkeys(("Listen", "LogConfig", "NotifyHook", "WebhookHook"), "schema"),
    "SecretRef": "secrets",
    "render_effective": "render",
    "JobsSource": "watched",
}

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
    "ReadConfig",
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


__getattr__ = lazy_attributes(__name__, _HOME)
