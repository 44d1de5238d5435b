"""A fault whose effect does not show on its target never passes: the run stops, reverts what
it has, runs its rollbacks and ends as an error (exit 1) that names the fault, the target and
the cause. Real processes, the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TARGET = """\
import os, signal, sys, time
mode = sys.argv[2]
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "block":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
elif mode == "handle":
    signal.signal(signal.SIGUSR1, lambda *a: open(sys.argv[1] + ".got", "w").write("usr1"))
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(0.05)
"""

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: not-in-effect}}
spec:
  baseline: 200ms
  recovery: 200ms
  probes:
    - {{name: tick, interval: 250ms, command: {{argv: ["true"]}}}}
  faults:
    - name: kill
      processKill: {{target: {{pidfile: "{pidfile}"}}, signal: {signal}}}
  rollbacks:
    - name: mark
      command: {{argv: ["touch", "{marker}"]}}
  limits: {{verifyTimeout: 2s}}
"""


def _target(tmp: Path, mode: str) -> tuple[subprocess.Popen[bytes], Path]:
    pidfile = tmp / "target.pid"
    proc = subprocess.Popen([sys.executable, "-c", TARGET, str(pidfile), mode],
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        assert time.monotonic() < deadline, "the target did not start"
        time.sleep(0.02)
    return proc, pidfile


def _run(tmp: Path, pidfile: Path, signal: str) -> tuple[subprocess.CompletedProcess[str],
                                                         dict[str, object]]:
    exp = tmp / "exp.yaml"
    exp.write_text(EXPERIMENT.format(pidfile=pidfile, signal=signal, marker=tmp / "rolled-back"))
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "run", str(exp), "--journal", str(tmp / "run.json"),
         "--state-dir", str(tmp / "state"), "--log-format", "json"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "XDG_STATE_HOME": str(tmp / "xdg")})
    return result, json.loads((tmp / "run.json").read_text())


@pytest.mark.parametrize(("mode", "cause"), [
    ("ignore", "ignores SIGTERM, so it had no effect"),
    ("block", "blocks SIGTERM: it is pending"),
])
def test_a_signal_the_target_ignores_or_blocks_is_an_error(tmp_path: Path, mode: str,
                                                           cause: str) -> None:
    proc, pidfile = _target(tmp_path, mode)
    try:
        result, journal = _run(tmp_path, pidfile, "SIGTERM")
        assert proc.poll() is None, "the target is still running: the kill had no effect"
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode == 1, result.stdout + result.stderr
    assert journal["status"] == "error" and journal["verdict"] == "ERROR"
    fault = journal["faults"][0]  # type: ignore[index]
    assert cause in fault["not_in_effect"] and f"pid {proc.pid}" in fault["not_in_effect"]
    assert journal["abort"]["cause"] == "not-in-effect"  # type: ignore[index]
    assert "did not take effect" in journal["message"]  # type: ignore[operator]
    assert "NOT IN EFFECT" in result.stdout and "ERROR (exit 1)" in result.stdout
    assert (tmp_path / "rolled-back").exists(), "the rollbacks ran"


def test_a_signal_the_target_handles_is_delivered_and_passes(tmp_path: Path) -> None:
    proc, pidfile = _target(tmp_path, "handle")
    try:
        result, journal = _run(tmp_path, pidfile, "SIGUSR1")
        assert proc.poll() is None
        assert Path(str(pidfile) + ".got").read_text() == "usr1"
    finally:
        proc.kill()
        proc.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    fault = journal["faults"][0]  # type: ignore[index]
    assert "handled SIGUSR1 and is still running" in fault["effect"]
