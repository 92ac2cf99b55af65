"""A command hook that leaves a trace, and ways to look for it in /proc and in its log."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path


def hook_yaml(log: Path, marker: str, *, sleep: float, name: str = "probe") -> str:
    """A `hooks:` section: append WATCHERD_DELIVERY_ID to `log`, then sleep `sleep` seconds.

    `marker` ends up in the hook's command line, so `running_hooks` can find it.
    """
    code = (
        "import os, sys, time; sys.stdin.read(); "
        f"f = open({str(log)!r}, 'a'); f.write(os.environ['WATCHERD_DELIVERY_ID'] + '\\n'); "
        f"f.close(); time.sleep({sleep})"
    )
    return (
        f"hooks:\n  - name: {name}\n"
        f"    command: {json.dumps([sys.executable, '-c', code, marker])}\n"
        "    timeout: 30s\n"
    )


def running_hooks(marker: str, parent: int | None = None) -> list[int]:
    """PIDs of live processes whose command line holds `marker` (children of `parent`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if parent is not None and int(ppid) != parent:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def executions(log: Path) -> Counter[str]:
    """How many times the hook ran for each delivery id."""
    if not log.exists():
        return Counter()
    return Counter(line for line in log.read_text().splitlines() if line)
