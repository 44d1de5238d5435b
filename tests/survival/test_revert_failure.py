"""A revert the kernel refuses: exit 4, a message naming the fault, and a journal entry that a
later `chaos recover` acts on. Also: `chaos run` refuses the target until it is recovered."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from chaos.platform.local import procs

HERE = Path(__file__).resolve().parent

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: revert-fails}}
spec:
  baseline: 300ms
  recovery: 300ms
  probes:
    - {{name: up, interval: 100ms, tcp: {{host: 127.0.0.1, port: {port}}}}}
  faults:
    - {{name: pause, at: 100ms, duration: 1s, processPause: {{target: {{pidfile: "{pidfile}"}}}}}}
  limits: {{expiryGrace: 60s}}
"""


def chaos(*args: str, seccomp: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "chaos", *args]
    if seccomp:
        argv = [sys.executable, str(HERE / "seccomp_deny.py"), "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_refused_revert_is_exit_4_and_recover_fixes_it(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    pidfile = tmp_path / "target.pid"
    pidfile.write_text(f"{target.pid}\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.format(port=listener.getsockname()[1], pidfile=pidfile))
    state = tmp_path / "state"
    journal = tmp_path / "run.json"
    try:
        result = chaos("run", str(exp), "--state-dir", str(state), "--journal", str(journal),
                       "--log-format", "json", seccomp=True)
        assert result.returncode == 4, result.stdout + result.stderr
        assert "REVERT FAILED for: pause" in result.stdout
        assert "chaos recover" in result.stdout
        record = json.loads(journal.read_text())
        fault = record["faults"][0]
        assert fault["revert_error"] and "kill -CONT" in fault["revert_error"]
        assert procs.is_stopped(target.pid), "the kernel really refused: still paused"

        wal = next((state / "runs").glob("*.jsonl")).read_text()
        assert '"type":"revert_failed"' in wal

        again = chaos("run", str(exp), "--state-dir", str(state))
        assert again.returncode == 2
        assert "never reverted" in again.stderr and "chaos recover" in again.stderr
        assert procs.is_stopped(target.pid)

        dry = chaos("recover", "--dry-run", "--state-dir", str(state))
        assert dry.returncode == 0
        assert "pause [processPause] applied" in dry.stdout
        assert f"kill -CONT {target.pid}" in dry.stdout
        assert procs.is_stopped(target.pid), "--dry-run touches nothing"

        fixed = chaos("recover", "--state-dir", str(state))
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "resumed 1 paused process" in fixed.stdout
        time.sleep(0.1)
        assert not procs.is_stopped(target.pid)
        assert not procs.find_by_name(r"chaos\.platform\.local\._watchdog"), "watchdog cancelled"
        assert "nothing to recover" in chaos("recover", "--state-dir", str(state)).stdout
        journals = "".join(p.read_text() for p in (state / "runs").glob("*.jsonl"))
        assert '"by":"recover"' in journals
    finally:
        target.kill()
        target.wait()
        listener.close()
