"""The bad-config battery: `check-config` and `run` as subprocesses on broken configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemonharness import daemon_env

EXIT_CONFIG = 78
HEAD = "store:\n  path: state.db\njobs:\n  file: jobs.txt\n"

#: (config body after HEAD, line of the error, key path named; None for a YAML syntax error)
BROKEN = [
    ("poll:\n  interval: soon\n", 6, "poll.interval"),
    ("api:\n  timout: 5s\n", 6, "api.timout"),
    ('hooks:\n  - name: x\n    command: "rm -rf /"\n', 7, "hooks[0].command"),
    ("api:\n  max_concurrency: 0\n", 6, "api.max_concurrency"),
    ("hooks:\n  - name: a\n    on: [finished]\n    command: [x]\n", 7, "hooks[0].on[0]"),
    ("log:\n  level: loud\n", 6, "log.level"),
    ("api: [unclosed\n", 6, None),  # the parser notices at the end of the text
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("body", "line", "key"), BROKEN)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_broken_config_exits_78_naming_file_line_key_and_creates_nothing(
    tmp_path: Path, command: str, body: str, line: int, key: str | None
) -> None:
    """A broken config: exit 78, `file:line: key` on stderr, no database or lock created."""
    config = tmp_path / "watcherd.yaml"
    config.write_text(HEAD + body)
    (tmp_path / "jobs.txt").write_text("ft-abc\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = subprocess.run(
        [sys.executable, "-m", "watcherd", command, "--config", str(config)],
        capture_output=True,
        text=True,
        env=daemon_env(),
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    where = f"{config}:{line}: " if str(config) in proc.stderr else f"watcherd.yaml:{line}: "
    assert where + (key or "invalid YAML") in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before
