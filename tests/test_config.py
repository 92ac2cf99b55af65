"""Config loading: defaults, the example file, durations, paths and the effective render."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.config import (
    CommandHook,
    Config,
    SecretRef,
    WebhookHook,
    default_config,
    default_config_path,
    load_config,
    parse_config,
    render_effective,
)
from watcherd.config.schema import SYSTEM_CONFIG_PATH
from watcherd.durations import format_duration, parse_duration
from watcherd.errors import ConfigError
from watcherd.model import DEFAULT_HOOK_EVENTS

EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"
FULL = """\
api:
  base_url: http://127.0.0.1:8080/
  api_key_file: key.txt
  api_key_credential: my-key
  timeout: 1.5s
  max_concurrency: 3
  max_rate: 0.5
  max_retry_after: 10m
store: {path: /var/lib/watcherd/w.db}
jobs: {file: null, ids: [ft-a, ft-b, ft-a]}
poll: {interval: 2h, min_interval: 500ms, max_backoff: 1d}
hooks:
  - name: run.me
    on: [completed, missing, running]
    command: [./bin/hook, --flag]
    env: {A: b}
    cwd: work
    timeout: 90
    max_attempts: 2
    output_cap_bytes: 2048
  - name: hook
    webhook: {url: "https://example.com/x", secret_credential: wh}
  - name: chat
    on: error
    notify: {urls_env: URLS, title: "{job_id}", template: "{status} {train_loss:.3f}"}
log: {format: JSON, level: debug}
metrics_listen: "[::1]:9105"
"""


def _parse(text: str, folder: Path = Path("/etc/w"), **env: str) -> Config:
    """Parse `text` as if it were /etc/w/config.yaml, with the given environment."""
    return parse_config(text, path=folder / "config.yaml", environ=env)


@pytest.mark.parametrize("text", ["", "{}", "# only a comment\n", "api:\nlog:\n"])
def test_empty_config_gives_defaults(text: str) -> None:
    """An empty file, `{}`, comments or empty sections give all defaults."""
    config = _parse(text)
    assert config == default_config(Path("/etc/w/config.yaml"), environ={})
    assert config.api.api_key == SecretRef(credential="together-api-key", env="TOGETHER_API_KEY")
    assert config.store.path == Path("/etc/w/watcherd.db")
    assert config.jobs.file == Path("/etc/w/jobs.txt")
    assert config.source == Path("/etc/w/config.yaml")


def test_example_file_loads() -> None:
    """config.example.yaml, as shipped, loads and holds the spec's example hooks."""
    config = load_config(EXAMPLE, environ={})
    assert [h.name for h in config.hooks] == ["deploy", "team"]
    deploy, team = config.hooks
    assert deploy.on == ("completed",)
    assert isinstance(deploy.action, CommandHook)
    assert deploy.action.argv == ("/usr/local/bin/deploy-model", "--stage", "prod")
    assert deploy.timeout == 600.0
    assert team.on == DEFAULT_HOOK_EVENTS
    assert isinstance(team.action, WebhookHook)
    assert team.action.secret == SecretRef(file=Path("/etc/watcherd/webhook.secret"))
    assert config.poll.max_backoff == 600.0


def test_full_config_fields() -> None:
    """Every key lands in its field, with paths resolved and values normalised."""
    config = _parse(FULL)
    assert config.api.base_url == "http://127.0.0.1:8080"
    assert config.api.api_key == SecretRef(credential="my-key", file=Path("/etc/w/key.txt"))
    assert (config.api.timeout, config.api.max_concurrency, config.api.max_rate) == (1.5, 3, 0.5)
    assert config.api.max_retry_after == 600.0
    assert config.jobs == type(config.jobs)(file=None, ids=("ft-a", "ft-b"))
    assert (config.poll.interval, config.poll.min_interval, config.poll.max_backoff) == (
        7200.0,
        0.5,
        86400.0,
    )
    command = config.hooks[0].action
    assert isinstance(command, CommandHook)
    assert command.argv == ("/etc/w/bin/hook", "--flag")
    assert command.env == (("A", "b"),) and command.cwd == Path("/etc/w/work")
    assert config.hooks[0].on == ("completed", "missing", "running")
    assert config.hooks[2].on == ("error",)
    assert (config.log.format, config.log.level) == ("json", "debug")
    assert str(config.metrics_listen) == "[::1]:9105"


def test_on_is_read_as_a_key() -> None:
    """A bare `on:` is the key "on", not YAML 1.1's boolean True."""
    config = _parse("hooks:\n  - name: a\n    on: [error]\n    command: [x]\n")
    assert config.hooks[0].on == ("error",)


def test_yes_and_no_stay_strings() -> None:
    """YAML 1.1 booleans like `yes` are plain strings (a bare program name here)."""
    config = _parse("hooks:\n  - name: a\n    command: [yes, no, on, off]\n")
    assert config.hooks[0].action == CommandHook(argv=("yes", "no", "on", "off"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("'45'", 45.0),
        ("2.5", 2.5),
    ],
)
def test_durations_in_config(text: str, seconds: float) -> None:
    """poll.interval accepts numbers and unit suffixes."""
    assert _parse(f"poll: {{interval: {text}, min_interval: 0.1s}}").poll.interval == seconds


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_format_duration_round_trips(seconds: float) -> None:
    """format_duration writes text parse_duration reads back exactly."""
    assert parse_duration(format_duration(seconds)) == seconds


def test_store_defaults_to_state_directory() -> None:
    """Under systemd the database defaults to $STATE_DIRECTORY/watcherd.db."""
    config = _parse("", STATE_DIRECTORY="/var/lib/watcherd:/other")
    assert config.store.path == Path("/var/lib/watcherd/watcherd.db")
    explicit = _parse("store: {path: db/w.db}", STATE_DIRECTORY="/var/lib/watcherd")
    assert explicit.store.path == Path("/etc/w/db/w.db")


def test_relative_paths_use_the_config_folder(tmp_path: Path) -> None:
    """Relative paths resolve against the config file's folder, not the working directory."""
    file = tmp_path / "conf" / "watcherd.yaml"
    file.parent.mkdir()
    file.write_text("jobs: {file: j.txt}\nhooks:\n  - name: a\n    command: [bare, ./rel]\n")
    config = load_config(file, environ={})
    assert config.jobs.file == tmp_path / "conf" / "j.txt"
    action = config.hooks[0].action
    assert isinstance(action, CommandHook)
    assert action.argv == ("bare", "./rel")


def test_api_key_file_keeps_the_default_credential() -> None:
    """Naming a key file keeps the systemd credential first and drops the default variable."""
    config = _parse("api: {api_key_file: /k}")
    assert config.api.api_key == SecretRef(credential="together-api-key", file=Path("/k"))


@pytest.mark.parametrize("text", [FULL, "", EXAMPLE.read_text()])
def test_render_effective_round_trips(text: str) -> None:
    """The rendered effective config parses back to an equal Config."""
    config = _parse(text)
    assert _parse(render_effective(config, environ={})) == config


def test_max_retry_after_defaults_to_an_hour_and_must_be_a_duration() -> None:
    """api.max_retry_after: 1 h unless set; anything but a positive duration names the key."""
    assert _parse("").api.max_retry_after == 3600.0
    with pytest.raises(ConfigError) as info:
        _parse("api:\n  max_retry_after: forever\n")
    assert info.value.key == "api.max_retry_after" and info.value.line == 2


def test_render_effective_reports_secret_presence() -> None:
    """The render says which secret sources are present, by reference only."""
    config = _parse("api: {api_key_env: MY_KEY}")
    text = render_effective(config, environ={"MY_KEY": "sk-live-123"})
    assert "env MY_KEY (set)" in text
    assert "credential together-api-key (missing)" in text
    assert "sk-live-123" not in text


def test_load_config_missing_file_is_config_error(tmp_path: Path) -> None:
    """A missing config file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")


def test_load_config_non_utf8_names_line(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError with the line of the bad byte."""
    file = tmp_path / "c.yaml"
    file.write_bytes(b"api:\n  base_url: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(info.value).startswith(f"{file}:2: config file is not UTF-8")


def test_default_config_path_prefers_environment() -> None:
    """$WATCHERD_CONFIG wins over the other candidates."""
    assert default_config_path({"WATCHERD_CONFIG": "/x/c.yaml"}) == Path("/x/c.yaml")


def test_default_config_path_falls_back_to_local_file() -> None:
    """Without $WATCHERD_CONFIG or /etc/watcherd/config.yaml, ./watcherd.yaml is used."""
    if SYSTEM_CONFIG_PATH.exists():
        pytest.skip("this machine has /etc/watcherd/config.yaml")
    assert default_config_path({}) == Path("watcherd.yaml")


def _check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """`watcherd check-config --config CONFIG` as a subprocess, given 15 s at most."""
    argv = [sys.executable, "-m", "watcherd", "check-config", "--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)


def test_a_fifo_as_config_is_refused_not_waited_on(tmp_path: Path) -> None:
    """`check-config` on a FIFO exits 78 at once, naming it, instead of blocking on open."""
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    done = _check_config(fifo)
    assert done.returncode == 78
    assert f"{fifo}: config file is not a regular file (it is a FIFO)" in done.stderr


def test_dev_zero_as_config_is_refused() -> None:
    """`--config /dev/zero` exits 78 at once instead of reading without bound."""
    done = _check_config(Path("/dev/zero"))
    assert done.returncode == 78
    assert "/dev/zero: config file is not a regular file (it is a character device)" in done.stderr


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("ft-ok\nft-../x\n", "jobs.txt:2: invalid job ID 'ft-../x'"),
        ("ft-a ft-b\n", "jobs.txt:1: one job ID a line"),
        (b"ft-a # caf\xe9\n", "jobs.txt:1: jobs file is not UTF-8 text"),
        (None, "jobs file is not a regular file (it is a FIFO)"),
    ],
    ids=["bad-id", "two-ids", "latin-1", "fifo"],
)
def test_check_config_refuses_a_jobs_file_run_refuses(
    tmp_path: Path, content: str | bytes | None, error: str
) -> None:
    """`check-config` exits 78 naming the jobs file and line where `run` would."""
    jobs = tmp_path / "jobs.txt"
    if content is None:
        os.mkfifo(jobs)
    else:
        jobs.write_bytes(content.encode() if isinstance(content, str) else content)
    config = tmp_path / "c.yaml"
    config.write_text("jobs:\n  file: jobs.txt\n")
    done = _check_config(config)
    assert (done.returncode, done.stdout) == (78, "")
    assert error in done.stderr


def test_a_config_over_1_mib_is_refused(tmp_path: Path) -> None:
    """A config file larger than 1 MiB is a ConfigError, not parsed."""
    file = tmp_path / "c.yaml"
    file.write_text("# padding\n" * 110_000)
    with pytest.raises(ConfigError, match="config file is larger than 1 MiB"):
        load_config(file)
