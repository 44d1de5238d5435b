"""Kill the runner at random moments and check that no fault survives.

One experiment uses every local fault kind this host supports: a paused process, proxy latency,
a proxy that resets connections, CPU burners and a process kill. A trial starts the real CLI,
sends SIGKILL (or SIGTERM/SIGINT) at a random moment, before, during or after injection, then
checks the machine: nothing paused, no burner, no proxy listening, no watchdog left over.
Used by tests/survival (a few trials) and bench/sigkill_survival.py (50+ trials).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos.platform.local import procs

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: survival}}
spec:
  baseline: 500ms
  recovery: 500ms
  proxies:
    - {{name: slow, listen: "127.0.0.1:{p1}", upstream: "127.0.0.1:{up}"}}
    - {{name: reset, listen: "127.0.0.1:{p2}", upstream: "127.0.0.1:{up}"}}
  probes:
    - {{name: up, interval: 100ms, tcp: {{host: 127.0.0.1, port: {up}}}}}
  slos:
    - {{name: up, probe: up, successRate: ">= 50%", window: 2s}}
  faults:
    - {{name: latency, at: 200ms, duration: 3s, networkLatency: {{proxy: slow, delay: 100ms}}}}
    - {{name: pause, at: 300ms, duration: 3s, processPause: {{target: {{pidfile: "{pause}"}}}}}}
    - {{name: resets, at: 400ms, duration: 3s, connectionReset: {{proxy: reset}}}}
    - {{name: burn, at: 500ms, duration: 3s, cpuStress: {{workers: 1, load: 30%}}}}
    - {{name: kill, at: 1s, processKill: {{target: {{pidfile: "{kill}"}}}}}}
  rollbacks:
    - name: mark
      command: {{argv: ["{python}", "-c", "open('{marker}', 'a').write('x')"]}}
  limits: {{maxDuration: 30s, expiryGrace: {grace}s}}
"""

FAULT_SPAN = 3.5  # the last durable fault ends 3.5 s after the baseline
PLANNED = 0.5 + FAULT_SPAN + 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Trial:
    mode: str  # "recover" | "expiry" | "SIGTERM" | "SIGINT"
    delay: float
    exit_code: int | None = None
    outstanding_at_kill: int = 0
    leftovers: list[str] = field(default_factory=list)
    recover_exit: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.leftovers


class Harness:
    def __init__(self, workdir: Path, grace: float = 2.0) -> None:
        self.dir = workdir
        self.grace = grace
        self.state = workdir / "state"
        self.up_port = _free_port()
        self.upstream = socket.socket()
        self.upstream.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.upstream.bind(("127.0.0.1", self.up_port))
        self.upstream.listen(64)
        # Accept and close: a listener that never accepts fills its backlog after a few dozen
        # trials, the TCP probe starts failing, and the guard (rightly) aborts the run before
        # the signal under test arrives.
        self._accepting = threading.Thread(target=self._accept_forever, daemon=True)
        self._accepting.start()

    def _accept_forever(self) -> None:
        while True:
            try:
                conn, _ = self.upstream.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self.upstream.close()

    def _sleeper(self, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        pidfile = self.dir / f"{name}.pid"
        pidfile.write_text(f"{proc.pid}\n")
        return proc, pidfile

    def trial(self, mode: str, delay: float) -> Trial:
        result = Trial(mode=mode, delay=delay)
        pause_proc, pause_pid = self._sleeper("pause")
        kill_proc, kill_pid = self._sleeper("kill")
        p1, p2 = _free_port(), _free_port()
        marker = self.dir / "rollback-ran"
        marker.unlink(missing_ok=True)
        exp = self.dir / "survival.yaml"
        exp.write_text(EXPERIMENT.format(p1=p1, p2=p2, up=self.up_port, pause=pause_pid,
                                         kill=kill_pid, python=sys.executable, marker=marker,
                                         grace=self.grace))
        journal = self.dir / "run.json"
        journal.unlink(missing_ok=True)
        runner = subprocess.Popen(
            [sys.executable, "-m", "chaos", "run", str(exp), "--state-dir", str(self.state),
             "--journal", str(journal), "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        try:
            time.sleep(delay)
            sig = {"recover": signal.SIGKILL, "expiry": signal.SIGKILL,
                   "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}[mode]
            runner.send_signal(sig)
            result.exit_code = runner.wait(timeout=30)
            killed_at = time.monotonic()
            if mode == "recover":
                dry = subprocess.run(
                    [sys.executable, "-m", "chaos", "recover", "--dry-run", "--state-dir",
                     str(self.state)], capture_output=True, text=True, timeout=60)
                result.outstanding_at_kill = dry.stdout.count(" [")
                rec = subprocess.run(
                    [sys.executable, "-m", "chaos", "recover", "--state-dir", str(self.state)],
                    capture_output=True, text=True, timeout=60)
                result.recover_exit = rec.returncode
                if rec.returncode != 0:
                    result.leftovers.append(f"recover exit {rec.returncode}: {rec.stderr[-300:]}")
            elif mode == "expiry":
                # Without recover: everything must be gone by duration + grace.
                deadline = started + 1.5 + PLANNED + self.grace + 1.0
                time.sleep(max(0.0, deadline - killed_at))
            else:
                self._check_interrupted(result, journal, marker)
            result.leftovers += self._leftovers(pause_proc.pid, p1, p2, runner.pid)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            for proc in (pause_proc, kill_proc):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.kill()
                proc.wait()
            self._cleanup_after_failure()
        return result

    def _check_interrupted(self, result: Trial, journal: Path, marker: Path) -> None:
        if result.exit_code == 0:
            result.detail = "the run finished before the signal"
            return
        if result.exit_code != 130:
            result.leftovers.append(f"exit code {result.exit_code}, expected 130")
        data = json.loads(journal.read_text()) if journal.exists() else {}
        if data and data.get("status") != "interrupted":
            result.leftovers.append(f"journal status {data.get('status')}")
        if data and data.get("phase") != "done":
            result.leftovers.append("journal incomplete")
        for fault in data.get("faults", []):
            if fault.get("injected_at") and not fault.get("one_shot") and \
                    not fault.get("reverted_at"):
                result.leftovers.append(f"fault {fault['name']} not reverted in the journal")
        if data and data.get("status") == "interrupted" and data.get("phase") == "done" and \
                any(p["phase"] == "baseline" for p in data.get("phases", [])) and \
                not marker.exists():
            result.leftovers.append("rollback did not run")

    def _leftovers(self, paused_pid: int, p1: int, p2: int, runner_pid: int) -> list[str]:
        """What this trial left; other processes' burners and watchdogs are not counted."""
        found: list[str] = []
        if procs.proc_info(paused_pid) and procs.is_stopped(paused_pid):
            found.append(f"pid {paused_pid} still paused")
        burners = [p for p in procs.find_by_name(r"chaos\.platform\.local\._burner")
                   if f"--parent {runner_pid}" in p.cmdline]
        if burners:
            found.append(f"{len(burners)} CPU burner(s) still running")
        for port in (p1, p2):
            if _listening(port):
                found.append(f"proxy port {port} still listening")
        watchdogs = self._watchdogs()
        if watchdogs:
            found.append(f"watchdog still running: {watchdogs[0].cmdline[-60:]}")
        return found

    def _run_ids(self) -> set[str]:
        runs = self.state / "runs"
        return {p.stem for p in runs.glob("*.jsonl")} if runs.is_dir() else set()

    def _watchdogs(self) -> list[procs.ProcInfo]:
        ids = self._run_ids()
        return [p for p in procs.find_by_name(r"chaos\.platform\.local\._watchdog")
                if any(f"--tag {run_id}/" in p.cmdline for run_id in ids)]

    def _cleanup_after_failure(self) -> None:
        """Remove what a failed trial left, so the next trial starts clean (ours only)."""
        ids = self._run_ids()
        for info in procs.find_by_name(r"chaos\.platform\.local\._(burner|watchdog)"):
            if any(f"--tag {run_id}/" in info.cmdline for run_id in ids) or (
                    "_burner" in info.cmdline and procs.proc_info(info.ppid) is None):
                try:
                    os.kill(info.pid, signal.SIGKILL)
                except OSError:
                    continue


def random_delay(rng: random.Random) -> float:
    """A kill moment from process start-up, through injection, to after the last revert."""
    return rng.uniform(0.0, 1.2 + PLANNED)
