"""Broken configs: each gives a ConfigError naming file, line and key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.config import parse_config
from watcherd.errors import ConfigError

PATH = Path("config.yaml")

HOOK = "hooks:\n  - name: a\n"
CMD = HOOK + "    command: [x]\n"

BROKEN = [
    ("api:\n  timeout: -5\n", "config.yaml:2: api.timeout: must be a positive duration"),
    ("api:\n  timeout: 0\n", "config.yaml:2: api.timeout: must be a positive duration"),
    (
        CMD + "  - name: b\n    command: [y]\n    timeout: soon\n",
        "config.yaml:6: hooks[1].timeout: must be a positive duration",
    ),
    ("apii: {}\n", "config.yaml:1: apii: unknown key; did you mean 'api'?"),
    ("api:\n  timeot: 3\n", "config.yaml:2: api.timeot: unknown key; did you mean 'timeout'?"),
    ("api:\n  api_key: sk-123\n", "config.yaml:2: api.api_key: secrets never sit inline"),
    ("api:\n  base_url: ftp://x\n", "config.yaml:2: api.base_url: must be an http:// or https://"),
    (
        "api:\n  base_url: 'https://api.together.ai/?x=1'\n",
        "config.yaml:2: api.base_url: must not hold a query or fragment",
    ),
    (
        "api:\n  base_url: 'https://api.together.ai#v1'\n",
        "config.yaml:2: api.base_url: must not hold a query or fragment",
    ),
    ("api:\n  max_concurrency: 0\n", "config.yaml:2: api.max_concurrency: must be an integer >= 1"),
    ("api:\n  max_concurrency: '8'\n", "config.yaml:2: api.max_concurrency: must be an integer"),
    ("api:\n  max_rate: -1\n", "config.yaml:2: api.max_rate: must be a positive number"),
    ("api:\n  api_key_env: BAD-NAME\n", "config.yaml:2: api.api_key_env: is not a valid name"),
    ("api: 5\n", "config.yaml:1: api: must be a mapping, not an integer"),
    (HOOK + "    command: deploy --prod\n", "config.yaml:3: hooks[0].command: must be a list"),
    (HOOK + "    command: []\n", "config.yaml:3: hooks[0].command: must name a program"),
    (
        HOOK + "    command:\n      - prog\n      - 8080\n",
        "config.yaml:5: hooks[0].command[1]: must be a string, not an integer",
    ),
    ("hooks:\n  - command: [x]\n", "config.yaml:2: hooks[0]: needs a name"),
    ("hooks:\n  - name: a b\n    command: [x]\n", "config.yaml:2: hooks[0].name: must be 1-64"),
    (CMD + "  - name: a\n    command: [y]\n", "config.yaml:4: hooks[1].name: duplicate hook name"),
    (HOOK, "config.yaml:2: hooks[0]: needs exactly one of command, webhook, notify"),
    (
        CMD + "    webhook: {url: 'https://x'}\n",
        "config.yaml:2: hooks[0]: needs exactly one of command, webhook, notify (got command and",
    ),
    (CMD + "    on: [completed, done]\n", "config.yaml:4: hooks[0].on[1]: unknown status 'done'"),
    (CMD + "    on: []\n", "config.yaml:4: hooks[0].on: must name at least one status"),
    (CMD + "    tiemout: 5\n", "config.yaml:4: hooks[0].tiemout: unknown key; did you mean"),
    (
        CMD + "    max_attempts: 0\n",
        "config.yaml:4: hooks[0].max_attempts: must be an integer >= 1",
    ),
    (
        HOOK + "    webhook: {url: 'file:///etc/passwd'}\n",
        "config.yaml:3: hooks[0].webhook.url: must be an http:// or https:// URL",
    ),
    (HOOK + "    webhook: {secret_env: X}\n", "config.yaml:3: hooks[0].webhook: needs a url"),
    (
        HOOK + "    webhook:\n      url: https://x\n      secret: hunter2\n",
        "config.yaml:5: hooks[0].webhook.secret: secrets never sit inline",
    ),
    (HOOK + "    notify: {title: hi}\n", "config.yaml:3: hooks[0].notify: needs one of urls_file"),
    (
        HOOK + "    notify:\n      urls_env: U\n      template: '{job_id} {password}'\n",
        "config.yaml:5: hooks[0].notify.template: unknown field {password}",
    ),
    (
        HOOK + "    notify:\n      urls_env: U\n      title: '{job_id.__class__}'\n",
        "config.yaml:5: hooks[0].notify.title: unknown field {job_id.__class__}",
    ),
    (
        HOOK + "    notify:\n      urls_env: U\n      title: '{job_id'\n",
        "config.yaml:5: hooks[0].notify.title: bad template",
    ),
    (
        CMD + "    env: {1BAD: x}\n",
        "config.yaml:4: hooks[0].env.1BAD: is not a usable variable name",
    ),
    (CMD + "    env:\n      PORT: 8080\n", "config.yaml:5: hooks[0].env.PORT: must be a string"),
    (
        HOOK + "    webhook: {url: 'https://x'}\n    env: {A: b}\n",
        "config.yaml:4: hooks[0].env: only command hooks take env and cwd",
    ),
    ("log: {format: xml}\n", "config.yaml:1: log.format: must be one of auto, console, json"),
    ("log:\n  level: verbose\n", "config.yaml:2: log.level: must be one of debug, info"),
    ("metrics_listen: localhost\n", "config.yaml:1: metrics_listen: must be host:port"),
    ("metrics_listen: '127.0.0.1:70000'\n", "config.yaml:1: metrics_listen: must be host:port"),
    ("jobs:\n  ids:\n    - ft-ok\n    - nope\n", "config.yaml:4: jobs.ids[1]: invalid job ID"),
    ("- a\n- b\n", "config.yaml:1: the top level must be a mapping of sections, not a list"),
    ("hooks: {name: a}\n", "config.yaml:1: hooks: must be a list, not a mapping"),
    ("api: {}\napi: {}\n", "config.yaml:2: invalid YAML: duplicate key 'api'"),
    ("true: 1\n", "config.yaml:1: invalid YAML: keys must be strings"),
    ("api:\n  timeout: [1,\n", "config.yaml:3: invalid YAML:"),
    ("api:\n\ttimeout: 3\n", "config.yaml:2: invalid YAML:"),
    ("poll:\n  min_interval: 1m\n  interval: 30s\n", "config.yaml:3: poll.interval: must not be"),
    ("store:\n  path: ''\n", "config.yaml:2: store.path: must be a non-empty string"),
    ("jobs:\n  file: [a]\n", "config.yaml:2: jobs.file: must be a non-empty string"),
    ("x: !!python/object:os.system ls\n", "config.yaml:1: invalid YAML: could not determine"),
    ("a: !!int nope\n", "config.yaml:1: invalid YAML: bad value"),
]


@pytest.mark.parametrize(("text", "prefix"), BROKEN, ids=[p.split(": ")[1] for _, p in BROKEN])
def test_broken_config_names_file_line_and_key(text: str, prefix: str) -> None:
    """Each broken config raises ConfigError whose message starts `file:line: key: message`."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, path=PATH, environ={})
    assert str(info.value).startswith(prefix), str(info.value)


def test_inline_secret_value_never_in_message() -> None:
    """An inline API key is refused without echoing it."""
    with pytest.raises(ConfigError) as info:
        parse_config("api:\n  api_key: sk-very-secret\n", path=PATH, environ={})
    assert "sk-very-secret" not in str(info.value)


def test_unknown_key_value_never_in_message() -> None:
    """An unknown key's value (maybe a secret) is not echoed."""
    with pytest.raises(ConfigError) as info:
        parse_config("api:\n  token: sk-very-secret\n", path=PATH, environ={})
    assert "sk-very-secret" not in str(info.value)


def _check_only_config_errors(text: str) -> None:
    """Parse `text`; anything but success or a located ConfigError fails the test."""
    try:
        parse_config(text, path=PATH, environ={})
    except ConfigError as exc:
        assert exc.path == "config.yaml"
        assert exc.line is not None and exc.line >= 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_gives_only_config_errors(text: str) -> None:
    """Arbitrary text never raises anything but a ConfigError with file and line."""
    _check_only_config_errors(text)


YAML_CHARS = st.sampled_from([*"abon:-[]{}!&*|>'\"#%@` \n\t,?0123456789.", "!!int ", "<<"])


@settings(max_examples=300, deadline=None)
@given(st.lists(YAML_CHARS, max_size=60).map("".join))
def test_fuzzed_yaml_syntax_gives_only_config_errors(text: str) -> None:
    """YAML-ish punctuation soup never raises anything but a located ConfigError."""
    _check_only_config_errors(text)


KEYS = st.sampled_from(
    [
        "api",
        "store",
        "jobs",
        "poll",
        "hooks",
        "log",
        "metrics_listen",
        "name",
        "on",
        "command",
        "webhook",
        "notify",
        "url",
        "timeout",
        "env",
        "cwd",
        "ids",
        "file",
        "path",
        "interval",
        "base_url",
        "max_rate",
        "max_concurrency",
        "format",
        "level",
        "urls_env",
        "template",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["10m", "ft-abc", "https://x", "completed", "{job_id}", "json", "/bin/true"]),
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_fuzzed_structures_give_only_config_errors(doc: dict[str, Any]) -> None:
    """Well-formed YAML of random shape, built from real key names, gives only ConfigError."""
    _check_only_config_errors(yaml.safe_dump(doc))
