"""The systemd units agree with the code: command line, credentials, exit codes, hardening."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from watcherd.cli import EXIT_CONFIG
from watcherd.cli.parser import build_parser
from watcherd.config import ApiConfig, WebhookHook, load_config, parse_config
from watcherd.daemon.health import STATUS_EVERY
from watcherd.daemon.lifecycle import STOP_GRACE

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "watcherd.service"
TEMPLATE = ROOT / "systemd" / "watcherd@.service"
EXAMPLE = ROOT / "config.example.yaml"
#: Lines in which the template may differ from the plain unit.
INSTANCE_KEYS = {"Description", "ExecStart", "StateDirectory", "LoadCredential", "#LoadCredential"}
SPECIFIERS = {"%E": "/etc", "%i": "demo", "%%": "%"}
DURATION = re.compile(r"(\d+)(min|s|h)?")


def directives(unit: Path, *, commented: bool = False) -> dict[str, list[str]]:
    """`Key=value` lines of `unit` (keys repeat); with `commented`, `#Key=value` lines too."""
    found: dict[str, list[str]] = {}
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if commented and re.match(r"#[A-Z][A-Za-z]+=", line):
            line = line[1:]
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def expand(text: str) -> str:
    """The unit specifiers we use, as the system manager expands them (instance `demo`)."""
    return re.sub(r"%[A-Za-z%]", lambda m: SPECIFIERS[m.group()], text)


def seconds(text: str) -> float:
    """A systemd time span like `5min` or `90s` in seconds."""
    match = DURATION.fullmatch(text)
    assert match is not None, text
    return int(match[1]) * {"min": 60, "h": 3600}.get(match[2] or "s", 1)


def credentials(unit: Path) -> dict[str, str]:
    """LoadCredential names and their source files, the commented examples included."""
    values = directives(unit, commented=True)["LoadCredential"]
    return dict(value.split(":", 1) for value in values)


@pytest.mark.parametrize(("unit", "config"), [(UNIT, "config.yaml"), (TEMPLATE, "demo.yaml")])
def test_exec_start_is_the_console_script_with_valid_flags(unit: Path, config: str) -> None:
    """ExecStart runs the `watcherd` console script, and our own parser accepts its flags."""
    (exec_start,) = directives(unit)["ExecStart"]
    program, *argv = expand(exec_start).split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(program).name == "watcherd" and scripts["watcherd"] == "watcherd.cli:main"
    assert entry_points(group="console_scripts", name="watcherd")
    args = build_parser().parse_args(argv)
    assert (args.command, args.config, args.once, args.until_done) == (
        "run",
        Path("/etc/watcherd") / config,
        False,
        False,
    )


def test_api_key_credential_is_the_one_the_config_reads() -> None:
    """The API key's LoadCredential name is the config default, in code and in the example."""
    creds = credentials(UNIT)
    default = ApiConfig().api_key.credential
    example = load_config(EXAMPLE, environ={}).api.api_key
    assert default == example.credential == "together-api-key"
    assert creds["together-api-key"] == "/etc/watcherd/together-api-key"
    assert "# api_key_file: /etc/watcherd/together-api-key" in EXAMPLE.read_text()


def test_webhook_credential_matches_the_example_and_resolves(tmp_path: Path) -> None:
    """The webhook credential loads the example's secret file and is read by that name."""
    source = credentials(UNIT)["webhook-secret"]
    hooks = load_config(EXAMPLE, environ={}).hooks
    secret_files = {
        str(h.action.secret.file)
        for h in hooks
        if isinstance(h.action, WebhookHook) and h.action.secret
    }
    assert source in secret_files
    assert "secret_credential: webhook-secret" in UNIT.read_text()
    text = (
        "hooks:\n  - name: team\n"
        "    webhook: {url: 'https://h.example/x', secret_credential: webhook-secret}\n"
    )
    config = parse_config(text, path=tmp_path / "c.yaml", environ={})
    (tmp_path / "webhook-secret").write_text("s3cret\n")
    action = config.hooks[0].action
    ref = action.secret if isinstance(action, WebhookHook) else None
    assert ref is not None
    assert ref.resolve({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "s3cret"


def test_template_credentials_are_per_instance() -> None:
    """The template loads the same credential names, from files named after the instance."""
    plain, template = credentials(UNIT), credentials(TEMPLATE)
    assert set(plain) == set(template)
    assert all("%i" in source for source in template.values())


def test_restart_prevented_exactly_on_the_config_error_exit(tmp_path: Path) -> None:
    """RestartPreventExitStatus= is the CLI's config-error code, which a bad config returns."""
    for unit in (UNIT, TEMPLATE):
        assert directives(unit)["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
        assert directives(unit)["Restart"] == ["on-failure"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("poll:\n  interval: soon\n")
    proc = subprocess.run(
        [sys.executable, "-m", "watcherd", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == EXIT_CONFIG == 78, proc.stderr
    assert "bad.yaml:2: poll.interval" in proc.stderr


def test_lifecycle_directives_fit_the_daemon() -> None:
    """Type=notify, SIGHUP reload, a watchdog well above the ping interval, room to stop."""
    d = directives(UNIT)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert seconds(d["WatchdogSec"][0]) >= 10 * STATUS_EVERY
    assert seconds(d["TimeoutStopSec"][0]) > STOP_GRACE + 10
    assert d["KillMode"] == ["mixed"]
    assert d["UMask"] == ["0077"]
    assert d["ConfigurationDirectory"] == ["watcherd"] and d["StateDirectory"] == ["watcherd"]
    assert directives(TEMPLATE)["StateDirectory"] == ["watcherd/%i"]


def test_template_differs_from_the_unit_only_per_instance() -> None:
    """watcherd@.service is watcherd.service but for the instance-specific lines."""

    def body(unit: Path) -> list[str]:
        lines = unit.read_text().split("[Unit]", 1)[1].splitlines()
        return [ln for ln in lines if ln.split("=", 1)[0] not in INSTANCE_KEYS]

    plain, template = body(UNIT), body(TEMPLATE)
    comments = {ln for ln in set(plain) ^ set(template) if ln.startswith("#")}
    assert [ln for ln in plain if ln not in comments] == [
        ln for ln in template if ln not in comments
    ]


def _installed_copy(unit: Path, folder: Path, name: str) -> Path:
    """The unit with ExecStart pointing at this venv's console script, as `name`."""
    script = Path(sys.executable).parent / "watcherd"
    copy = folder / name
    copy.write_text(unit.read_text().replace("/usr/local/bin/watcherd", str(script)))
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize(
    ("unit", "name"), [(UNIT, "watcherd.service"), (TEMPLATE, "watcherd@demo.service")]
)
def test_systemd_analyze_verify_and_security(unit: Path, name: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` is clean and `security` rates the unit at most 2.0."""
    copy = _installed_copy(unit, tmp_path, name)
    for command in (
        ["verify", str(copy)],
        ["security", "--offline=true", "--threshold=20", str(copy)],
    ):
        result = subprocess.run(
            ["systemd-analyze", *command], capture_output=True, text=True, timeout=60, check=False
        )
        output = result.stdout[-2000:] + result.stderr[-2000:]
        assert result.returncode == 0, output
        assert "verify" not in command or not result.stderr.strip(), output
