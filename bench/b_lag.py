"""Guard timing under CPU stress: probe scheduling lag p99 while every core is saturated.

Two measurements, both with 4 HTTP probes at 4 Hz against a loopback service:

own stress   Our run injects its own ``cpuStress`` fault on every core (load 100%) for the whole
             observation window. The figure is the engine's own record of how late each sample
             started against its schedule (``probe_lag`` in the journal): per trial, the worst
             probe's p99. Target: under 20 ms.
hog          Somebody else's CPU hog: one busy loop per core at normal priority, started by the
             bench around the run. Ours and Chaos Toolkit's safeguards control are measured the
             same way, at the service: the p99 of how much each probe's period overran its
             interval (arrival[k] - arrival[k-1] - interval), all probes pooled. The service runs
             at nice -10 so its own timestamps are not what the hog delays.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Ctx, Figure, free_port, percentile

PROBES = 4
INTERVAL = 0.25

#: A loopback service that answers 200 and appends "<path> <monotonic seconds>" per request.
SERVICE = r"""
import os, sys, time, signal
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
os.nice(-10)
out = open(sys.argv[2], "w", buffering=1)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        out.write(f"{self.path} {time.monotonic():.6f}\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _service(port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", SERVICE, str(port), str(log)])
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the bench service did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _overruns(log: Path) -> list[float]:
    """Per probe (path), how much each period exceeded the interval, in ms (floored at 0)."""
    arrivals: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        path, t = line.split()
        arrivals.setdefault(path, []).append(float(t))
    out: list[float] = []
    for times in arrivals.values():
        out += [max(0.0, (b - a - INTERVAL) * 1000) for a, b in itertools.pairwise(times)]
    return out


def _ours_experiment(port: int, seconds: float, stress: bool) -> str:
    probes = "\n".join(
        f"    - {{name: p{i}, interval: 250ms, http: {{url: \"http://127.0.0.1:{port}/p{i}\", "
        f"timeout: 1s}}}}" for i in range(PROBES))
    # Without stress the run is a plain observation: baseline only, no fault.
    fault = (f"""
    - name: burn
      cpuStress: {{load: 100%}}
      at: 0s
      duration: {seconds:g}s""" if stress else " []")
    baseline = "1s" if stress else f"{seconds:g}s"
    return f"""apiVersion: chaos/v1
kind: Experiment
metadata: {{name: bench-lag}}
spec:
  target: {{platform: local}}
  baseline: {baseline}
  recovery: 1s
  probes:
{probes}
  slos:
    - {{name: up, probe: p0, successRate: ">= 1%", window: 5s}}
  faults:{fault}
  limits: {{maxDuration: 2m}}
"""


def _run_ours(ctx: Ctx, exp_text: str, tag: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix=f"lag-{tag}-", dir=ctx.workdir))
    exp = work / "exp.yaml"
    exp.write_text(exp_text)
    journal = work / "run.json"
    done = subprocess.run([ctx.chaos, "run", str(exp), "--journal", str(journal),
                           "--state-dir", str(work / "state")],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"our run exited {done.returncode}:\n{done.stdout}{done.stderr}")
    record: dict[str, object] = json.loads(journal.read_text())
    return record


def _hog() -> list[subprocess.Popen[bytes]]:
    """One busy loop per core at normal priority (what `stress-ng --cpu 0` would be)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 1)]


def _ctk_experiment(port: int, seconds: float) -> dict[str, object]:
    probes = [{"type": "probe", "name": f"p{i}", "tolerance": 200,
               "provider": {"type": "http", "url": f"http://127.0.0.1:{port}/p{i}",
                            "timeout": 1}} for i in range(PROBES)]
    for probe in probes:
        probe["frequency"] = INTERVAL
    return {
        "version": "1.0.0",
        "title": "bench-lag",
        "description": "4 safeguard probes at 4 Hz while the CPU is hogged",
        "controls": [{"name": "safeguard", "provider": {
            "type": "python", "module": "chaosaddons.controls.safeguards",
            "arguments": {"probes": probes}}}],
        "method": [{"type": "action", "name": "hold",
                    "provider": {"type": "process", "path": "sleep",
                                 "arguments": f"{seconds:g}"}}],
    }


def _run_ctk(ctx: Ctx, port: int, seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="lag-ctk-", dir=ctx.workdir))
    exp = work / "exp.json"
    exp.write_text(json.dumps(_ctk_experiment(port, seconds)))
    done = subprocess.run([ctx.ctk, "--no-version-check", "--no-log-file", "run",
                           "--journal-path", str(work / "journal.json"), str(exp)],
                          cwd=work, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"Chaos Toolkit exited {done.returncode}:\n{done.stdout}"
                           f"{done.stderr}")
    status = json.loads((work / "journal.json").read_text()).get("status")
    if status != "completed":
        raise RuntimeError(f"Chaos Toolkit's run ended '{status}', not 'completed'")


def run(ctx: Ctx) -> list[Figure]:
    seconds = 8.0 if ctx.quick else 30.0
    trials = ctx.trials(3, 1)
    own: list[float] = []
    hog_ours: list[float] = []
    hog_peer: list[float] = []
    for trial in range(trials):
        # 1. our own CPU stress: the engine's record of its lag
        port = free_port()
        log = ctx.workdir / f"own-{trial}.log"
        service = _service(port, log)
        try:
            record = _run_ours(ctx, _ours_experiment(port, seconds, stress=True), "own")
        finally:
            _stop(service)
        lag = record["probe_lag"]
        if not isinstance(lag, dict) or len(lag) != PROBES:
            raise RuntimeError(f"the journal has no probe_lag for {PROBES} probes: {lag!r}")
        own.append(max(v["p99"] for v in lag.values()) * 1000)

        # 2. a normal-priority hog, ours then the peer, measured at the service
        for who, sink in (("ours", hog_ours), ("peer", hog_peer)):
            port = free_port()
            log = ctx.workdir / f"hog-{who}-{trial}.log"
            service = _service(port, log)
            hog = _hog()
            try:
                if who == "ours":
                    _run_ours(ctx, _ours_experiment(port, seconds, stress=False), "hog")
                else:
                    _run_ctk(ctx, port, seconds)
            finally:
                for p in hog:
                    p.kill()
                for p in hog:
                    p.wait()
                _stop(service)
            sink.append(percentile(_overruns(log), 99))
    return [
        Figure(bench="lag", name="probe scheduling lag p99, own CPU stress on every core",
               unit="ms", ours=own, target_text="< 20 ms", target=lambda o, _p: o < 20,
               notes=f"{PROBES} probes at 4 Hz, {seconds:g}s of cpuStress load 100% on "
               f"{os.cpu_count()} cores; per trial the worst probe's p99 from the journal"),
        Figure(bench="lag", name="probe period overrun p99, normal-priority CPU hog",
               unit="ms", ours=hog_ours, peer=hog_peer, peer_name="Chaos Toolkit 1.19",
               target_text="report",
               notes="measured at the service: arrival[k] - arrival[k-1] - 250 ms, all probes"),
    ]
