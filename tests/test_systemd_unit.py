"""The shipped unit file: required directives, and its systemd-analyze exposure."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "systemd" / "watcherd.service"


def _directives() -> dict[str, list[str]]:
    """`Key=value` lines of the unit (keys may repeat), comments skipped."""
    found: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "78"),
        ("StateDirectory", "watcherd"),
        ("ConfigurationDirectory", "watcherd"),
        ("UMask", "0077"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LoadCredential", "together-api-key:/etc/watcherd/together-api-key"),
    ],
)
def test_required_directive(key: str, value: str) -> None:
    """Each directive the operations spec requires is present with its value."""
    assert value in _directives().get(key, [])


def test_runs_the_daemon_with_a_watchdog() -> None:
    """ExecStart runs `watcherd run --config`, and a watchdog is set."""
    directives = _directives()
    (exec_start,) = directives["ExecStart"]
    assert " run --config " in exec_start
    assert directives["WatchdogSec"] != [""]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_security_exposure_at_most_two() -> None:
    """`systemd-analyze security` rates the unit at most 2.0 (threshold 20 of 100)."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
