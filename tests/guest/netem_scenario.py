"""Runs INSIDE the netem guest (see test_netem_fault.py): the real chaos CLI with a tc netem fault.

A network namespace with one end of a veth pair holds the demo service; the runner in the root
namespace probes it over the veth. Prints one JSON object with what it measured.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NS = "chaos-b"
URL = "http://10.200.0.2:8080/health"
WORK = Path("/tmp/netem-scenario")

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: netem-in-guest}}
spec:
  baseline: 1s
  # Deleting a netem qdisc drops the packets it still holds: a SYN-ACK in flight is lost and
  # that one connect waits for the 1s SYN retransmission. Recovery is judged on the median.
  recovery: 3s
  probes:
    # TCP connect: the SYN-ACK crosses the delayed interface exactly once. (An HTTP request to
    # the demo service pays it twice: headers and body leave as two segments and Nagle holds
    # the second until the first is acknowledged, a real effect of latency on chatty servers.)
    - {{name: svc, interval: 100ms, tcp: {{host: 10.200.0.2, port: 8080, timeout: 2s}}}}
  slos:
    - {{name: generous, probe: svc, latencyP50: "< 5s", window: 2s}}
  faults:
    - name: slow-link
      networkLatency: {{interface: vb, netns: {ns}, delay: 100ms, jitter: 5ms}}
      at: 0s
      duration: {duration}
  limits: {{expiryGrace: 1s}}
"""


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def qdisc() -> str:
    return sh("ip", "netns", "exec", NS, "tc", "qdisc", "show", "dev", "vb", "root").strip()


def chaos(*args: str) -> list[str]:
    return [sys.executable, "-m", "chaos", *args]


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", "va", "type", "veth", "peer", "name", "vb")
    sh("ip", "link", "set", "vb", "netns", NS)
    sh("ip", "addr", "add", "10.200.0.1/24", "dev", "va")
    sh("ip", "link", "set", "va", "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", "10.200.0.2/24", "dev", "vb")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "vb", "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    server = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m",
                               "chaos.demo.service", "--host", "10.200.0.2", "--port", "8080"])
    out: dict[str, object] = {}
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(URL, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        exp = WORK / "exp.yaml"
        # 1. a whole run: latency seen during the fault, qdisc gone afterwards
        exp.write_text(EXPERIMENT.format(ns=NS, duration="2s"))
        out["plan"] = subprocess.run(chaos("plan", str(exp)), capture_output=True,
                                     text=True).stdout
        out["qdisc_before"] = qdisc()
        run = subprocess.run(chaos("run", str(exp), "--state-dir", str(WORK / "state"),
                                   "--journal", str(WORK / "run.json"), "--log-format", "json"),
                             capture_output=True, text=True)
        out["run_exit"] = run.returncode
        out["run_stderr_tail"] = run.stderr[-2000:]
        journal = json.loads((WORK / "run.json").read_text())
        samples = journal["probes"]["svc"]
        by_phase: dict[str, list[float]] = {}
        for s in samples:
            if s["ok"] and s["latency"] is not None:
                by_phase.setdefault(s["phase"], []).append(s["latency"])
        out["p50_ms"] = {k: round(statistics.median(v) * 1000, 1) for k, v in by_phase.items()}
        out["fault"] = journal["faults"][0]
        out["qdisc_after"] = qdisc()

        # 2. SIGKILL mid-fault, no recover: the watchdog removes the qdisc at duration + grace
        exp.write_text(EXPERIMENT.format(ns=NS, duration="3s"))
        runner = subprocess.Popen(chaos("run", str(exp), "--state-dir", str(WORK / "state2"),
                                        "--journal", str(WORK / "run2.json")),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "netem" not in qdisc():
            time.sleep(0.05)
        out["qdisc_while_injected"] = qdisc()
        runner.kill()
        runner.wait()
        killed = time.monotonic()
        out["qdisc_right_after_kill"] = qdisc()
        while time.monotonic() - killed < 8 and "netem" in qdisc():
            time.sleep(0.1)
        out["watchdog_removed_after_s"] = round(time.monotonic() - killed, 2)
        out["qdisc_after_expiry"] = qdisc()
        recover = subprocess.run(chaos("recover", "--state-dir", str(WORK / "state2")),
                                 capture_output=True, text=True)
        out["recover_exit"] = recover.returncode
        out["recover_stdout"] = recover.stdout

        # 3. SIGKILL mid-fault, then `chaos recover` at once: the qdisc and the watchdog go.
        exp.write_text(EXPERIMENT.format(ns=NS, duration="20s"))
        runner = subprocess.Popen(chaos("run", str(exp), "--state-dir", str(WORK / "state3"),
                                        "--journal", str(WORK / "run3.json")),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "netem" not in qdisc():
            time.sleep(0.05)
        out["qdisc_before_kill3"] = qdisc()
        runner.kill()
        runner.wait()
        recover = subprocess.run(chaos("recover", "--state-dir", str(WORK / "state3")),
                                 capture_output=True, text=True)
        out["recover3_exit"] = recover.returncode
        out["recover3_stdout"] = recover.stdout
        out["qdisc_after_recover3"] = qdisc()
        out["watchdogs_after_recover3"] = subprocess.run(
            ["pgrep", "-f", "chaos.platform.local._watchdog"], capture_output=True,
            text=True).stdout.strip()
        out["wal_types"] = [
            json.loads(line)["type"] for line in
            next((WORK / "state").glob("runs/*.jsonl")).read_text().splitlines() if line]

        # 4. An earlier run's watchdog, due after a later run put its own netem there, removes
        #    nothing: it deletes by its own handle only.
        sh("ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", "vb", "root", "handle",
           "2bbb:", "netem", "delay", "10ms")
        watchdog = subprocess.Popen([sys.executable, "-m", "chaos.platform.local._watchdog",
                                     "--at", f"{time.time() + 1:.3f}", "--netem",
                                     f"1aaa/vb@{NS}"])
        watchdog.wait(timeout=20)
        out["qdisc_after_old_watchdog"] = qdisc()
        sh("ip", "netns", "exec", NS, "tc", "qdisc", "del", "dev", "vb", "root")
    finally:
        server.kill()
        server.wait()
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
