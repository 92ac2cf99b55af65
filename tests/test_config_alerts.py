"""The `alerts:` section and `allow_cancel:`: defaults, validation, and arming cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cliharness import watcherd
from watcherd.config import parse_config
from watcherd.config.alerting import AlertsConfig
from watcherd.errors import ConfigError

ARMED = "allow_cancel: true\nalerts:\n  nonfinite: {action: cancel}\n"


def _parse(text: str) -> object:
    return parse_config(text, path=Path("/etc/w/config.yaml"), environ={})


def test_rules_are_on_by_default_and_never_cancel() -> None:
    """An empty config has every rule enabled, alerting only, and cancel disarmed."""
    config = parse_config("", path=Path("c.yaml"), environ={})
    assert config.alerts == AlertsConfig()
    assert config.allow_cancel is False
    assert config.alerts.armed() == ()
    assert config.alerts.stalled.stall_after is None  # adaptive


def test_cancel_without_allow_cancel_is_refused_with_file_and_line() -> None:
    """`action: cancel` alone is a configuration error pointing at the action's line."""
    text = "alerts:\n  diverging:\n    factor: 3\n    action: cancel\n"
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    assert str(caught.value).startswith("/etc/w/config.yaml:4: alerts.diverging.action: ")
    assert "allow_cancel: true" in str(caught.value)


def test_check_config_exits_78_for_an_unarmed_cancel(tmp_path: Path) -> None:
    """The CLI refuses the same config with exit code 78 and file:line."""
    config = tmp_path / "w.yaml"
    config.write_text("alerts:\n  stalled:\n    action: cancel\n")
    done = watcherd(config, "check-config")
    assert done.returncode == 78
    assert f"{config}:3: alerts.stalled.action:" in done.stderr


def test_check_config_is_loud_when_cancel_is_armed(tmp_path: Path) -> None:
    """An armed cancel is named on stderr and in the printed config's header."""
    config = tmp_path / "w.yaml"
    config.write_text(ARMED)
    done = watcherd(config, "check-config")
    assert done.returncode == 0
    assert "CANCEL ARMED" in done.stderr and "nonfinite" in done.stderr
    assert "# CANCEL ARMED" in done.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "alerts:\n  diverging: {factor: 1}\n",
            "alerts.diverging.factor: must be a number greater",
        ),
        ("alerts:\n  stalled: {floor: 0}\n", "alerts.stalled.floor: must be a positive duration"),
        ("alerts:\n  nonfinite: {keys: []}\n", "alerts.nonfinite.keys: must name at least one"),
        ("alerts:\n  overrun: {action: kill}\n", "alerts.overrun.action: must be one of alert"),
        ("alerts:\n  plateau: {}\n", "alerts.plateau: unknown key"),
        ("allow_cancel: yes\n", "allow_cancel: must be true or false"),
    ],
)
def test_bad_alert_settings_are_located(text: str, message: str) -> None:
    """Each bad value names its key path."""
    with pytest.raises(ConfigError, match=message):
        _parse(text)


def test_hooks_may_subscribe_to_alerts() -> None:
    """`on:` takes `alert.*` and `alert.<rule>`, but not unknown rules."""
    ok = "hooks:\n  - name: a\n    command: [x]\n    on: [alert.*, alert.stalled, completed]\n"
    config = parse_config(ok, path=Path("c.yaml"), environ={})
    assert config.hooks[0].on == ("alert.*", "alert.stalled", "completed")
    with pytest.raises(ConfigError, match=r"unknown status 'alert\.plateau'"):
        _parse("hooks:\n  - name: a\n    command: [x]\n    on: [alert.plateau]\n")


def test_stall_after_takes_a_fixed_duration() -> None:
    """`stall_after: 45m` replaces the adaptive limit."""
    config = parse_config("alerts:\n  stalled: {stall_after: 45m}\n", path=Path("c"), environ={})
    assert config.alerts.stalled.stall_after == 2700.0
