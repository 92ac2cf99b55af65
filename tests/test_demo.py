"""`watcherd demo` end to end: the tour shows an alert and the armed cancel stopping a job."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_the_demo_shows_an_alert_and_an_early_stop() -> None:
    """Exit 0; the NaN job's alert reaches the hook and watcherd stops it 30+ steps early."""
    done = subprocess.run(
        [sys.executable, "-m", "watcherd", "demo"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "nonfinite: train/loss is NaN at step" in out
    assert ":alert.nonfinite:1:announce: nonfinite open (cancel)" in out
    line = next(x for x in out.splitlines() if x.startswith("Cancel armed: watcherd cancelled"))
    saved = int(line.split(": ")[-1].split()[0])
    assert saved >= 30  # NaN from step 30, the job would have failed at step 80
