"""Shared by the hardening tests: the real CLI, target processes, another user's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: A uid that is neither the runner's nor root's (the tests run as root and chown to it).
STRANGER = 54321

TARGET = """\
import os, sys, time
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(0.05)
"""


def env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp / "xdg"), **extra}


def chaos(tmp: Path, *args: str, timeout: float = 60,
          **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env(tmp, **extra))


def target(tmp: Path, name: str = "target") -> tuple[subprocess.Popen[bytes], Path]:
    """A process writing its pid to ``tmp/name.pid`` (a folder only root can write)."""
    pidfile = tmp / f"{name}.pid"
    proc = subprocess.Popen([sys.executable, "-c", TARGET, str(pidfile)],
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        assert time.monotonic() < deadline, "the target did not start"
        time.sleep(0.02)
    return proc, pidfile


def state_of(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()[0]


def experiment(fault: str, *, duration: str = "3s", extra: str = "") -> str:
    return (
        "apiVersion: chaos/v1\nkind: Experiment\nmetadata: {name: hardening}\nspec:\n"
        "  baseline: 200ms\n  recovery: 200ms\n"
        "  probes:\n    - {name: tick, interval: 250ms, command: {argv: [\"true\"]}}\n"
        f"  faults:\n    - name: f\n      at: 0s\n      duration: {duration}\n"
        f"      {fault}\n{extra}"
    )


def journal_line(**record: Any) -> str:
    return json.dumps({"time": "2026-12-01T00:00:00.000Z", **record}) + "\n"
