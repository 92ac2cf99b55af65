"""Parse config YAML into the frozen dataclasses of `watcherd.config.schema`.

`check-config` and SIGHUP reload go through the same `parse`. Every error is a
ConfigError naming file, line and key path. Relative paths resolve against the
config file's folder (a `command` program only when it contains a `/`; a bare
name is looked up in PATH when the hook runs).
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

from watcherd.config.alerting import RULES, parse_alerts
from watcherd.config.document import Section, Where, YamlMap, kind_of, load_document
from watcherd.config.reading import JobsConfig, PollConfig, StoreConfig, read_config_file
from watcherd.config.reading import default_config_path as default_config_path
from watcherd.config.schema import (
    TEMPLATE_FIELDS,
    TEMPLATE_MAX_WIDTH,
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
    spec_too_wide,
)
from watcherd.config.secrets import SecretRef, redact_url
from watcherd.errors import ConfigError, InvalidJobIdError
from watcherd.model import DEFAULT_HOOK_EVENTS, KNOWN_STATUSES, MISSING, validate_job_id
from watcherd.spend import BUDGET_EXCEEDED

STORE_KEYS: Final = (
    "path",
    "url",
    "password_credential",
    "password_file",
    "password_env",
    "password",
    "lease",
)
#: How long a lease may be: long enough to outlast a poll, short enough to fail over.
LEASE_RANGE: Final = (2.0, 600.0)
TOP_KEYS: Final = (
    *("api", "store", "jobs", "poll", "hooks", "log", "metrics_listen"),
    *("alerts", "allow_cancel", "budget"),
)
API_KEYS: Final = ("base_url", "api_key_env", "api_key_file", "api_key_credential", "api_key")
API_KEYS_ALL: Final = (
    *API_KEYS,
    "timeout",
    "max_concurrency",
    "max_rate",
    "max_body_bytes",
    "max_retry_after",
)
POLL_KEYS: Final = (
    "interval",
    "min_interval",
    "metrics_interval",
    "events_interval",
    "max_backoff",
)
HOOK_KEYS: Final = ("name", "on", "timeout", "max_attempts", "output_cap_bytes")
HOOK_KEYS_ALL: Final = (*HOOK_KEYS, "command", "webhook", "notify", "env", "cwd")
WEBHOOK_KEYS: Final = ("url", "secret_file", "secret_credential", "secret_env", "secret")
NOTIFY_KEYS: Final = ("urls_file", "urls_credential", "urls_env", "urls", "title", "template")
#: What a hook's `on:` list may name.
HOOK_EVENTS: Final = (
    *DEFAULT_HOOK_EVENTS,
    *sorted(KNOWN_STATUSES - {*DEFAULT_HOOK_EVENTS}),
    MISSING,
    BUDGET_EXCEEDED,
    "alert.*",
    *(f"alert.{rule}" for rule in RULES),
)
LOG_FORMATS: Final = ("auto", "console", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

_HOOK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CREDENTIAL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LISTEN = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})")
_INLINE = "secrets never sit inline in the config; use {}"
_NO_SECRET: Final = SecretRef()


def parse(text: str, *, path: Path, environ: Mapping[str, str]) -> Config:
    """Parse config text; `path` names it in errors and anchors relative paths."""
    data = load_document(text, str(path))
    if data is not None and not isinstance(data, YamlMap):
        raise Where(str(path), getattr(data, "line", 1)).error(
            f"the top level must be a mapping of sections, not {kind_of(data)}"
        )
    root = Section(data, Where(str(path), 1), TOP_KEYS)
    base = path.absolute().parent
    alerts, allow_cancel = parse_alerts(root)
    return Config(
        api=_api(root.section("api", API_KEYS_ALL), base, environ),
        store=_store(root.section("store", STORE_KEYS), base, environ),
        jobs=_jobs(root.section("jobs", ("file", "ids")), base),
        poll=_poll(root.section("poll", POLL_KEYS)),
        hooks=_hooks(root, base, environ),
        log=_log(root.section("log", ("format", "level"))),
        metrics_listen=_listen(root),
        alerts=alerts,
        allow_cancel=allow_cancel,
        budget=_budget(root.section("budget", ("daily", "monthly"))),
        source=path,
    )


def _api(sec: Section, base: Path, environ: Mapping[str, str]) -> ApiConfig:
    """The `api:` section."""
    if "api_key" in sec:
        raise sec.where("api_key").error(
            _INLINE.format("api_key_env, api_key_file or -_credential")
        )
    d = ApiConfig()
    key = d.api_key  # systemd's LoadCredential= always gets its chance
    key = _secret(sec, "api_key", base, environ, default=key) or key
    base_url = _url(sec, "base_url", d.base_url)
    if "?" in base_url or "#" in base_url:  # the paths would land in it: GET /?x for every job
        shown = redact_url(base_url)[:60]
        raise sec.where("base_url").error(f"must not hold a query or fragment, got {shown!r}")
    return ApiConfig(
        base_url=base_url.rstrip("/"),
        api_key=key,
        timeout=sec.duration("timeout", d.timeout),
        max_concurrency=sec.integer("max_concurrency", d.max_concurrency, minimum=1),
        max_rate=sec.number("max_rate", d.max_rate),
        max_body_bytes=sec.integer("max_body_bytes", d.max_body_bytes, minimum=1024),
        max_retry_after=sec.duration("max_retry_after", d.max_retry_after),
    )


def _secret(
    sec: Section,
    prefix: str,
    base: Path,
    environ: Mapping[str, str],
    *,
    default: SecretRef = _NO_SECRET,
) -> SecretRef | None:
    """A SecretRef from `<prefix>_credential`, `_file` and `_env` (None if none is given).

    `default` gives the credential when none is named, and the variable when neither
    a file nor a variable is. A secret file `resolve` would refuse (group or world
    readable, not a regular file) is refused here, so that `check-config`, `run` and a
    reload all stop on it with file:line, not a delivery long after.
    """
    credential = _name(sec, f"{prefix}_credential", _CREDENTIAL) or default.credential
    env = _name(sec, f"{prefix}_env", _ENV_NAME)
    file = _path(sec, f"{prefix}_file", base) if f"{prefix}_file" in sec else None
    if file is None and env is None:
        env = default.env
    if credential is None and file is None and env is None:
        return None
    ref = SecretRef(credential=credential, file=file, env=env)
    try:
        ref.check(environ)
    except ConfigError as exc:
        raise sec.where(f"{prefix}_file").error(exc.message) from None
    return ref


def _name(sec: Section, key: str, pattern: re.Pattern[str]) -> str | None:
    """An optional identifier (credential or environment variable name)."""
    if key not in sec:
        return None
    value = sec.string(key, "")
    if not pattern.fullmatch(value):
        raise sec.where(key).error(f"is not a valid name: {value[:40]!r}")
    return value


def _path(sec: Section, key: str, base: Path, default: str = "") -> Path:
    """A path; relative ones resolve against the config file's folder."""
    value = sec.string(key, default)
    if "\0" in value:
        raise sec.where(key).error("must not contain a NUL character")
    return base / Path(value).expanduser()


def _url(sec: Section, key: str, default: str) -> str:
    """An http or https URL with a host."""
    value = sec.string(key, default)
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in value):
        shown = redact_url(value)[:60]
        raise sec.where(key).error(f"must be an http:// or https:// URL, got {shown!r}")
    return value


def _store(sec: Section, base: Path, environ: Mapping[str, str]) -> StoreConfig:
    """The `store:` section; the default lives in $STATE_DIRECTORY under systemd."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    default = Path(state) / "watcherd.db" if state else base / "watcherd.db"
    path = _path(sec, "path", base) if "path" in sec else default
    if "url" not in sec:
        for key in ("password_credential", "password_file", "password_env", "password", "lease"):
            if key in sec:
                raise sec.where(key).error("applies to a PostgreSQL store only (store.url)")
        if path.is_dir():  # SQLite would only say "disk I/O error"
            raise _directory_error(sec, path)
        return StoreConfig(path=path)
    if "password" in sec:
        raise sec.where("password").error(
            _INLINE.format("password_file, password_credential or password_env")
        )
    lease = sec.duration("lease", StoreConfig().lease)
    if not LEASE_RANGE[0] <= lease <= LEASE_RANGE[1]:
        raise sec.where("lease").error(
            f"must be between {LEASE_RANGE[0]:g} s and {LEASE_RANGE[1]:g} s, got {lease:g} s"
        )
    return StoreConfig(
        path=path,
        url=_pg_url(sec),
        password=_secret(sec, "password", base, environ),
        lease=lease,
    )


def _directory_error(sec: Section, path: Path) -> ConfigError:
    """store.path (given, or the default) names a directory."""
    message = f"{path} is a directory, not a database file (e.g. {path / 'watcherd.db'})"
    if "path" in sec:
        return sec.where("path").error(message)
    source = sec.at.file if Path(sec.at.file).exists() else f"defaults (no {sec.at.file})"
    return ConfigError(f"the default {message}; set store.path", path=source, key="store.path")


def _pg_url(sec: Section) -> str:
    """A `postgresql://` URL naming a database, without a password in it."""
    value = sec.string("url", "")
    shown = redact_url(value)[:80]
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("postgresql", "postgres") and len(parts.path) > 1
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in value):
        raise sec.where("url").error(
            f"must be a postgresql://[user@]host[:port]/database URL, got {shown!r}"
        )
    if parts.password is not None or "password=" in parts.query.lower():
        raise sec.where("url").error(
            _INLINE.format("password_file, password_credential or password_env")
            + f"; got {shown!r}"
        )
    return value


def _jobs(sec: Section, base: Path) -> JobsConfig:
    """The `jobs:` section (`file: null` turns the jobs file off)."""
    file = (
        None if "file" in sec and sec.get("file") is None else _path(sec, "file", base, "jobs.txt")
    )
    ids: dict[str, None] = {}
    for at, value in sec.sequence("ids"):
        try:
            ids[validate_job_id(value)] = None
        except InvalidJobIdError as exc:
            raise at.error(f"invalid job ID: {exc.reason}") from None
    return JobsConfig(file=file, ids=tuple(ids))


def _poll(sec: Section) -> PollConfig:
    """The `poll:` section."""
    d = PollConfig()
    poll = PollConfig(
        interval=sec.duration("interval", d.interval),
        min_interval=sec.duration("min_interval", d.min_interval),
        metrics_interval=sec.duration("metrics_interval", d.metrics_interval),
        events_interval=sec.duration("events_interval", d.events_interval),
        max_backoff=sec.duration("max_backoff", d.max_backoff),
    )
    if poll.interval < poll.min_interval:
        raise sec.where("interval").error("must not be shorter than poll.min_interval")
    if poll.metrics_interval < poll.min_interval:
        raise sec.where("metrics_interval").error("must not be shorter than poll.min_interval")
    if poll.events_interval < poll.metrics_interval:
        raise sec.where("events_interval").error("must not be shorter than poll.metrics_interval")
    return poll


def _budget(sec: Section) -> BudgetConfig:
    """The `budget:` section: dollars per day and month, each optional."""
    limits = {
        name: sec.number(name, 1.0) if sec.get(name) is not None else None
        for name in ("daily", "monthly")
    }
    return BudgetConfig(**limits)


def _log(sec: Section) -> LogConfig:
    """The `log:` section."""
    fmt = sec.choice("format", "auto", LOG_FORMATS)
    level = sec.choice("level", "info", LOG_LEVELS)
    return LogConfig(
        format=cast(Literal["auto", "console", "json"], fmt),
        level=cast(Literal["debug", "info", "warning", "error"], level),
    )


def _listen(root: Section) -> Listen | None:
    """`metrics_listen: host:port` (optional)."""
    value = root.get("metrics_listen")
    if value is None:
        return None
    try:
        return parse_listen(value)
    except ConfigError as exc:
        raise root.where("metrics_listen").error(exc.message) from None


def parse_listen(value: object) -> Listen:
    """`host:port` (IPv6 in brackets) as a Listen; ConfigError unless the host is loopback."""
    match = _LISTEN.fullmatch(value) if isinstance(value, str) else None
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise ConfigError("must be host:port, like 127.0.0.1:9105", key="metrics_listen")
    host = cast(str, value).rpartition(":")[0]
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not is_loopback_host(host):
        raise ConfigError(
            f"{host} is not a loopback address; the metrics endpoint has no authentication,"
            " so it listens on 127.0.0.1, ::1 or localhost only (put a proxy in front)",
            key="metrics_listen",
        )
    return Listen(host, int(match["port"]))


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP addresses."""
    if host.lower() == "localhost":
        return True
    try:
        import ipaddress  # only for metrics_listen

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hooks(root: Section, base: Path, environ: Mapping[str, str]) -> tuple[HookConfig, ...]:
    """The `hooks:` list; names are unique."""
    hooks: dict[str, HookConfig] = {}
    for at, raw in root.sequence("hooks"):
        sec = Section(raw, at, HOOK_KEYS_ALL)
        hook = _hook(sec, base, environ)
        if hook.name in hooks:
            raise sec.where("name").error(f"duplicate hook name {hook.name!r}")
        hooks[hook.name] = hook
    return tuple(hooks.values())


def _hook(sec: Section, base: Path, environ: Mapping[str, str]) -> HookConfig:
    """One hook: a name, its events and limits, and exactly one action."""
    if "name" not in sec:
        raise sec.at.error("needs a name")
    name = sec.string("name", "")
    if not _HOOK_NAME.fullmatch(name):
        raise sec.where("name").error("must be 1-64 letters, digits, '_', '.' or '-'")
    kinds = [k for k in ("command", "webhook", "notify") if k in sec]
    if len(kinds) != 1:
        got = f" (got {' and '.join(kinds)})" if kinds else ""
        raise sec.at.error(f"needs exactly one of command, webhook, notify{got}")
    for key in ("env", "cwd"):
        if key in sec and kinds[0] != "command":
            raise sec.where(key).error("only command hooks take env and cwd")
    action = _action(kinds[0], sec, base, environ)
    d = HookConfig(name=name, action=action)
    return HookConfig(
        name=name,
        action=action,
        on=_events(sec),
        timeout=sec.duration("timeout", d.timeout),
        max_attempts=sec.integer("max_attempts", d.max_attempts, minimum=1),
        output_cap_bytes=sec.integer("output_cap_bytes", d.output_cap_bytes, minimum=1024),
    )


def _action(kind: str, sec: Section, base: Path, environ: Mapping[str, str]) -> HookAction:
    """The hook's one action, of the kind its keys name."""
    if kind == "command":
        return _command(sec, base)
    if kind == "webhook":
        return _webhook(sec.section("webhook", WEBHOOK_KEYS), base, environ)
    return _notify(sec.section("notify", NOTIFY_KEYS), base, environ)


def _events(sec: Section) -> tuple[str, ...]:
    """`on:`: a status or list of statuses (default: the terminal ones)."""
    value = sec.get("on")
    if value is None:
        return DEFAULT_HOOK_EVENTS if "on" not in sec else _no_events(sec)
    items = [(sec.where("on"), value)] if isinstance(value, str) else sec.sequence("on")
    events: dict[str, None] = {}
    for at, item in items:
        if item not in HOOK_EVENTS:
            raise at.error(f"unknown status {_short(item)}; valid: {', '.join(HOOK_EVENTS)}")
        events[item] = None
    return tuple(events) or _no_events(sec)


def _no_events(sec: Section) -> tuple[str, ...]:
    """Refuse an empty `on:`."""
    raise sec.where("on").error("must name at least one status")


def _command(sec: Section, base: Path) -> CommandHook:
    """`command:` (an argv list, never a shell line), with `env:` and `cwd:`."""
    at = sec.where("command")
    if isinstance(sec.get("command"), str):
        raise at.error('must be a list (argv; no shell is used), like ["/usr/bin/prog", "arg"]')
    argv: list[str] = []
    for where, item in sec.sequence("command"):
        if not isinstance(item, str) or "\0" in item:
            raise where.error(f"must be a string, not {kind_of(item)} (quote numbers)")
        argv.append(item)
    if not argv or not argv[0].strip():
        raise at.error("must name a program to run")
    if "/" in argv[0]:
        argv[0] = str(base / Path(argv[0]).expanduser())
    cwd = _path(sec, "cwd", base) if "cwd" in sec else None
    return CommandHook(argv=tuple(argv), env=_env(sec), cwd=cwd)


def _env(sec: Section) -> tuple[tuple[str, str], ...]:
    """A command hook's `env:` mapping of names to string values."""
    raw, at = sec.get("env"), sec.where("env")
    if raw is None:
        return ()
    if not isinstance(raw, YamlMap):
        raise at.error(f"must be a mapping of names to strings, not {kind_of(raw)}")
    pairs: list[tuple[str, str]] = []
    for name, value in raw.items():
        where = at.child(name, raw.key_lines[name])
        if not _ENV_NAME.fullmatch(name) or name.startswith("WATCHERD_"):
            raise where.error("is not a usable variable name (letters, digits, _; not WATCHERD_*)")
        if not isinstance(value, str) or "\0" in value:
            raise where.error(f"must be a string, not {kind_of(value)} (quote numbers)")
        pairs.append((name, value))
    return tuple(pairs)


def _webhook(sec: Section, base: Path, environ: Mapping[str, str]) -> WebhookHook:
    """`webhook: {url, secret_file | secret_credential | secret_env}`."""
    if "secret" in sec:
        raise sec.where("secret").error(_INLINE.format("secret_file, secret_credential or -_env"))
    if "url" not in sec:
        raise sec.at.error("needs a url")
    return WebhookHook(url=_url(sec, "url", ""), secret=_secret(sec, "secret", base, environ))


def _notify(sec: Section, base: Path, environ: Mapping[str, str]) -> NotifyHook:
    """`notify: {urls_file | urls_credential | urls_env, title, template}`."""
    if "urls" in sec:
        raise sec.where("urls").error(
            _INLINE.format("urls_file, urls_credential or urls_env (Apprise URLs hold tokens)")
        )
    urls = _secret(sec, "urls", base, environ)
    if urls is None:
        raise sec.at.error("needs one of urls_file, urls_credential, urls_env")
    d = NotifyHook(urls=urls)
    return NotifyHook(
        urls=urls,
        title=_template(sec, "title", d.title),
        template=_template(sec, "template", d.template),
    )


_SAMPLE: Final = {
    name: ("ft-x" if kind is str else kind(1)) for name, kind in TEMPLATE_FIELDS.items()
}


def _template(sec: Section, key: str, default: str) -> str:
    """A message template using only the allowed `{field}` names, with modest specs."""
    text = sec.string(key, default)
    try:
        fields = [(n, spec) for _, n, spec, _ in string.Formatter().parse(text) if n is not None]
        unknown = [n for n, _ in fields if n not in TEMPLATE_FIELDS]
        _check_specs(sec, key, [spec or "" for _, spec in fields])
        if not unknown:
            text.format_map(_SAMPLE)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise sec.where(key).error(f"bad template: {exc}") from None
    if unknown:
        allowed = ", ".join(TEMPLATE_FIELDS)
        raise sec.where(key).error(f"unknown field {{{unknown[0]}}}; allowed: {allowed}")
    return text


def _check_specs(sec: Section, key: str, specs: list[str]) -> None:
    """Refuse a field inside a format spec and a width or precision beyond the cap."""
    for spec in specs:
        if "{" in spec:
            raise sec.where(key).error(f"bad template: a format spec holds a field ({spec!r})")
        if spec_too_wide(spec):
            raise sec.where(key).error(
                f"bad template: format spec {spec[:40]!r} asks for more than "
                f"{TEMPLATE_MAX_WIDTH} characters"
            )


def _short(value: Any) -> str:
    """A value for an error message, cut short."""
    return repr(value)[:40] if isinstance(value, str | int | float) else kind_of(value)


def parse_config(text: str, *, path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Parse config text; `path` names it in errors and anchors relative paths.

    `environ` (default `os.environ`) supplies `STATE_DIRECTORY` for the store default.
    Raises ConfigError (file, line, key path) for anything wrong.
    """
    return parse(text, path=path, environ=os.environ if environ is None else environ)


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and parse the config file at `path`; ConfigError if unreadable or invalid.

    It must be a regular file (a FIFO would block, `/dev/zero` never ends) of at most
    1 MiB; a UTF-8 byte order mark is allowed.
    """
    return config_from_bytes(read_config_file(path), path=path, environ=environ)


def config_from_bytes(
    data: bytes, *, path: Path, environ: Mapping[str, str] | None = None
) -> Config:
    """Parse a config file's bytes (as `read_config_file` returned them)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError("config file is not UTF-8 text", path=str(path), line=line) from None
    return parse_config(text, path=path, environ=environ)


def default_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """All defaults, as if `path` existed and was empty (for a missing default file)."""
    return parse_config("", path=path, environ=environ)
