"""The effective config as YAML (for `watcherd check-config`), secrets redacted.

The output loads back to an equal Config, but for credentials in URLs: a URL's
userinfo and its secret-looking query values are printed as `***` (and a comment says
so). Secrets only ever appear as references (credential, file or variable names); a
comment header says which are present.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import yaml

from watcherd.config.alerting import RULES, AlertsConfig
from watcherd.config.schema import CommandHook, Config, HookConfig, NotifyHook, WebhookHook
from watcherd.config.secrets import MASK, SecretRef, redact_url
from watcherd.durations import format_duration


def render(config: Config, environ: Mapping[str, str]) -> str:
    """YAML text for `config`, headed by comments on where it came from and its secrets."""
    header = [f"# watcherd effective configuration (source: {config.source or 'defaults'})"]
    header.append(f"# store backend: {_backend(config)}")
    header.append("# secrets, as references only (values are never shown):")
    for where, ref in config.secrets():
        header.append(f"#   {where}: {ref.describe(environ)}")
    masked = [where for where, url in _urls(config) if redact_url(url) != url]
    if masked:
        places = ", ".join(masked)
        header.append(f"# credentials in URLs, shown as {MASK}, sit in the config file: {places}")
    header.extend(f"# {line}" for line in cancel_notice(config))
    body = yaml.safe_dump(_document(config), sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(line.replace("\n", " ") for line in header) + "\n" + body


def _urls(config: Config) -> list[tuple[str, str]]:
    """Every URL in the config, with its key path."""
    found = [("api.base_url", config.api.base_url)]
    for i, hook in enumerate(config.hooks):
        if isinstance(hook.action, WebhookHook):
            found.append((f"hooks[{i}].webhook.url", hook.action.url))
    return found


def _document(config: Config) -> dict[str, Any]:
    """The config as plain data shaped like the YAML it is read from."""
    api = config.api
    doc: dict[str, Any] = {
        "api": {
            "base_url": redact_url(api.base_url),
            **_secret_keys("api_key", api.api_key),
            "timeout": format_duration(api.timeout),
            "max_concurrency": api.max_concurrency,
            "max_rate": api.max_rate,
            "max_body_bytes": api.max_body_bytes,
            "max_retry_after": format_duration(api.max_retry_after),
        },
        "store": _store(config),
        "jobs": {
            "file": None if config.jobs.file is None else str(config.jobs.file),
            "ids": list(config.jobs.ids),
        },
        "poll": {
            "interval": format_duration(config.poll.interval),
            "min_interval": format_duration(config.poll.min_interval),
            "metrics_interval": format_duration(config.poll.metrics_interval),
            "events_interval": format_duration(config.poll.events_interval),
            "max_backoff": format_duration(config.poll.max_backoff),
        },
        "hooks": [_hook(hook) for hook in config.hooks],
        "log": {"format": config.log.format, "level": config.log.level},
    }
    if config.metrics_listen is not None:
        doc["metrics_listen"] = str(config.metrics_listen)
    doc["allow_cancel"] = config.allow_cancel
    doc["alerts"] = _alerts(config.alerts)
    if config.budget.limits():
        doc["budget"] = config.budget.limits()
    return doc


def _alerts(alerts: AlertsConfig) -> dict[str, Any]:
    """Every rule with every setting, durations written back as text."""
    out: dict[str, Any] = {}
    for name in RULES:
        rule = alerts.rule(name)
        values: dict[str, Any] = {}
        for item in dataclasses.fields(rule):
            key, value = item.name, getattr(rule, item.name)
            if key in ("stall_after", "floor", "queue_after", "grace"):
                value = "auto" if value is None else format_duration(value)
            values[key] = list(value) if isinstance(value, tuple) else value
        out[name] = values
    return out


def cancel_notice(config: Config) -> list[str]:
    """What check-config says about cancelling: nothing when no rule may cancel."""
    armed = config.alerts.armed()
    if config.allow_cancel and armed:
        return [
            f"CANCEL ARMED: watcherd cancels a job on the service when {', '.join(armed)}"
            " fires (once per job; see `watcherd alerts`)."
        ]
    if config.allow_cancel:
        return ["allow_cancel is true, but no rule has action: cancel: nothing is cancelled."]
    return []


def _backend(config: Config) -> str:
    """`sqlite (<path>)` or `postgresql (<url, credentials masked>)`."""
    store = config.store
    where = str(store.path) if store.url is None else store.url
    return f"{store.backend} ({where})"


def _store(config: Config) -> dict[str, Any]:
    """The `store:` section: the file, or the PostgreSQL URL, password and lease."""
    store = config.store
    if store.url is None:
        return {"path": str(store.path)}
    # Shown whole: loading refused any password in it, and the user name is no secret.
    out: dict[str, Any] = {"path": str(store.path), "url": store.url}
    if store.password is not None:
        out |= _secret_keys("password", store.password)
    out["lease"] = format_duration(store.lease)
    return out


def _hook(hook: HookConfig) -> dict[str, Any]:
    """One hook as YAML data."""
    out: dict[str, Any] = {
        "name": hook.name,
        "on": list(hook.on),
        "timeout": format_duration(hook.timeout),
        "max_attempts": hook.max_attempts,
        "output_cap_bytes": hook.output_cap_bytes,
    }
    match hook.action:
        case CommandHook() as command:
            out["command"] = list(command.argv)
            if command.env:
                out["env"] = dict(command.env)
            if command.cwd is not None:
                out["cwd"] = str(command.cwd)
        case WebhookHook() as webhook:
            secret = {} if webhook.secret is None else _secret_keys("secret", webhook.secret)
            out["webhook"] = {"url": redact_url(webhook.url), **secret}
        case NotifyHook() as notify:
            out["notify"] = {
                **_secret_keys("urls", notify.urls),
                "title": notify.title,
                "template": notify.template,
            }
    return out


def _secret_keys(prefix: str, ref: SecretRef) -> dict[str, str]:
    """`<prefix>_credential`, `_file`, `_env` keys for a secret reference."""
    keys = {"credential": ref.credential, "file": ref.file, "env": ref.env}
    return {f"{prefix}_{kind}": str(value) for kind, value in keys.items() if value is not None}


def render_effective(config: Config, *, environ: Mapping[str, str] | None = None) -> str:
    """The effective config as YAML that loads back to the same Config; secrets redacted.

    Credentials in URLs (userinfo, secret-looking query values) are masked as `***`.

    Secrets are only ever references (a credential, file or variable name); a comment
    header tells which of them are present, never their values.
    """
    return render(config, os.environ if environ is None else environ)
