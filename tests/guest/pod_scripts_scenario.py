"""Runs INSIDE the netem guest (see test_pod_scripts.py): the Kubernetes networkLatency helper
scripts, exactly as the runner generates them, against a real kernel netem.

A network namespace "pod" holds one end of a veth pair, named eth0 as in a pod. The fault
script runs there as ``sh -c SCRIPT chaos-fault-<container>``, with root and NET_ADMIN only (the
helper's securityContext, through setpriv). The undo script runs as ``sh -c UNDO chaos-undo``,
in the same PID namespace (the guest's), like the undo container that shares the target's
process namespace. A TCP listener in the pod shows the delay: the SYN-ACK leaves through eth0,
so a connect from outside the pod takes the netem delay.

Every case is bounded. After each case, what it left is removed. The program prints
``RESULT {json}`` with what each case observed. test_pod_scripts.py judges it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from chaos.faults._ephemeral import (
    SCRIPT_PRELUDE,
    HelperPlan,
    container_names,
    script_lines,
    token,
    undo_script,
)
from chaos.faults.network_latency import helper_plan, netem_handle

RUN = "3f9c2d7a51b04e6e"
NS = "pod"
DEV = "eth0"
SERVER = ("10.77.0.2", 8080)
DELAY_MS = 150
NETEM = ["delay", f"{DELAY_MS}ms"]
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"]


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=20).stdout


def root_qdisc() -> dict[str, Any] | None:
    shown = json.loads(sh("ip", "netns", "exec", NS, "tc", "-j", "qdisc", "show", "dev", DEV,
                          "root") or "[]")
    return shown[0] if shown else None


def connect_ms(n: int = 3) -> float:
    """Median TCP connect time to the listener in the pod (its SYN-ACK crosses eth0)."""
    times = []
    for _ in range(n):
        t = time.monotonic()
        with socket.create_connection(SERVER, timeout=10):
            times.append((time.monotonic() - t) * 1000)
    return round(statistics.median(times), 1)


def setpriv(security: Mapping[str, Any]) -> list[str]:
    """The helper's securityContext: uid, only the added capabilities, no new privileges."""
    uid = int(security.get("runAsUser", 0))
    caps = security.get("capabilities", {})
    assert caps.get("drop") == ["ALL"], caps
    keep = "".join(f",+{c.lower()}" for c in caps.get("add", []))
    args = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups",
            "--inh-caps=-all", f"--bounding-set=-all{keep}"]
    if security.get("allowPrivilegeEscalation") is False:
        args.append("--no-new-privs")
    return args


class Script:
    """A helper script running in the pod; output collected line by line."""

    running: list[Script] = []

    def __init__(self, argv: list[str], security: Mapping[str, Any]) -> None:
        # `ip netns exec` and setpriv exec (no fork): the pid is the script's sh.
        self.name = argv[-1]
        self.popen = subprocess.Popen(["ip", "netns", "exec", NS, *setpriv(security), "env",
                                       "-i", *ENV, *argv], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
        self.t0 = time.time()
        self.lines: list[str] = []
        self.ended_at: float | None = None
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        Script.running.append(self)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        self.popen.wait()
        with self._cond:
            self.ended_at = time.time()
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def protocol(self) -> list[list[str]]:
        return [[what, rest] for what, rest in script_lines(self.output)]

    def wait_line(self, what: str, timeout: float = 10) -> str:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for kind, rest in script_lines("\n".join(self.lines)):
                    if kind == what:
                        return rest
                if self.ended_at is not None or time.monotonic() >= end:
                    raise RuntimeError(f"no {what} line within {timeout}s (exit "
                                       f"{self.popen.poll()}): {self.lines}")
                self._cond.wait(0.1)

    def wait(self, timeout: float) -> int:
        rc = self.popen.wait(timeout=timeout)  # TimeoutExpired: the case fails, reset kills it
        with self._cond:
            while self.ended_at is None:
                self._cond.wait(0.1)
        return rc

    def report(self) -> dict[str, Any]:
        return {"rc": self.popen.poll(), "lines": self.protocol(), "output": self.output,
                "ended_at": self.ended_at, "took_s": round((self.ended_at or time.time())
                                                           - self.t0, 2)}


class Fault:
    """One networkLatency fault in the pod: its container name, handle and plan."""

    def __init__(self, fault: str) -> None:
        self.name, _ = container_names(RUN, fault)
        self.handle = netem_handle(RUN, fault)
        self.plan: HelperPlan = helper_plan("helper:test", DEV, self.handle, NETEM)

    def start(self, deadline_in: float, start_by_in: float = 30) -> tuple[Script, int]:
        now = time.time()
        deadline = int(now + deadline_in)
        script = (f"DEADLINE={deadline}\nSTART_BY={int(now + start_by_in)}\n"
                  f"{SCRIPT_PRELUDE}{self.plan.script}")
        return Script(["sh", "-c", script, token(self.name)], self.plan.security), deadline

    def undo(self, timeout: float = 15) -> Script:
        undo = Script(["sh", "-c", undo_script(self.name, self.plan.belt), "chaos-undo"],
                      self.plan.undo_security)
        undo.wait(timeout)
        return undo


# ------------------------------------------------------------------------------------ the cases


def case_inject_and_expire() -> dict[str, Any]:
    f = Fault("slow")
    out: dict[str, Any] = {"handle": f.handle, "connect_ms_before": connect_ms(),
                           "qdisc_before": root_qdisc()}
    script, deadline = f.start(deadline_in=4)
    out["deadline"] = deadline
    out["in_effect"] = script.wait_line("in-effect")
    out["in_effect_at"] = time.time()
    out["qdisc_during"] = root_qdisc()
    out["connect_ms_during"] = connect_ms()
    out["rc"] = script.wait(timeout=deadline - time.time() + 5)
    out["script"] = script.report()
    out["qdisc_after"] = root_qdisc()
    out["connect_ms_after"] = connect_ms()
    return out


def case_early_undo() -> dict[str, Any]:
    f = Fault("slow")
    script, _ = f.start(deadline_in=60)
    script.wait_line("in-effect")
    out: dict[str, Any] = {"handle": f.handle, "qdisc_during": root_qdisc()}
    t = time.monotonic()
    undo = f.undo()
    out["undo_s"] = round(time.monotonic() - t, 2)
    out["undo"] = undo.report()
    out["rc"] = script.wait(timeout=5)
    out["script"] = script.report()
    out["qdisc_after"] = root_qdisc()
    out["connect_ms_after"] = connect_ms()
    return out


def case_sigterm() -> dict[str, Any]:
    f = Fault("slow")
    script, _ = f.start(deadline_in=60)
    script.wait_line("in-effect")
    out: dict[str, Any] = {"handle": f.handle, "qdisc_during": root_qdisc()}
    script.popen.send_signal(signal.SIGTERM)
    out["rc"] = script.wait(timeout=5)
    out["script"] = script.report()
    out["qdisc_after"] = root_qdisc()
    return out


def case_second_fault() -> dict[str, Any]:
    # The second's name is a prefix of the first's: only the $ in the undo's pattern keeps the
    # second's undo from stopping the first.
    first, second = Fault("slow-2"), Fault("slow")
    assert first.name.startswith(second.name)
    out: dict[str, Any] = {"first_handle": first.handle, "second_handle": second.handle}
    s1, _ = first.start(deadline_in=60)
    s1.wait_line("in-effect")
    s2, _ = second.start(deadline_in=60)
    out["second_rc"] = s2.wait(timeout=10)
    out["second"] = s2.report()
    out["qdisc_after_second"] = root_qdisc()
    # The same fault's script once more (same handle): refused too, and it must not remove the
    # qdisc that has its handle but is not its own.
    again, _ = first.start(deadline_in=60)
    out["again_rc"] = again.wait(timeout=10)
    out["again"] = again.report()
    out["qdisc_after_again"] = root_qdisc()
    undo2 = second.undo()
    out["second_undo"] = undo2.report()
    time.sleep(0.3)
    out["first_running_after_second_undo"] = s1.popen.poll() is None
    out["qdisc_after_second_undo"] = root_qdisc()
    out["connect_ms_after_second_undo"] = connect_ms()
    out["first_undo"] = first.undo().report()
    out["first_rc"] = s1.wait(timeout=5)
    out["first"] = s1.report()
    out["qdisc_after"] = root_qdisc()
    return out


def case_later_run_survives() -> dict[str, Any]:
    earlier, later = Fault("slow"), Fault("slow-b")
    out: dict[str, Any] = {"earlier_handle": earlier.handle, "later_handle": later.handle}
    a, deadline = earlier.start(deadline_in=3)
    a.wait_line("in-effect")
    # The earlier fault ends while its script's timer still runs (removed by hand, as an
    # operator or a recovery would), and a later run's fault takes the interface.
    sh("ip", "netns", "exec", NS, "tc", "qdisc", "del", "dev", DEV, "root", "handle",
       f"{earlier.handle}:")
    b, _ = later.start(deadline_in=60)
    out["later_in_effect"] = b.wait_line("in-effect")
    # The earlier script's deadline: its removal by handle must miss the later qdisc.
    out["earlier_rc"] = a.wait(timeout=deadline - time.time() + 5)
    out["earlier"] = a.report()
    out["qdisc_after_earlier_deadline"] = root_qdisc()
    # The earlier fault's undo (its belt: tc qdisc del ... handle EARLIER:) afterwards.
    out["earlier_undo"] = earlier.undo().report()
    out["qdisc_after_earlier_undo"] = root_qdisc()
    out["later_running"] = b.popen.poll() is None
    out["later_undo"] = later.undo().report()
    out["later_rc"] = b.wait(timeout=5)
    out["qdisc_after"] = root_qdisc()
    return out


def case_late() -> dict[str, Any]:
    f = Fault("slow")
    out: dict[str, Any] = {"qdisc_before": root_qdisc()}
    script, _ = f.start(deadline_in=60, start_by_in=-5)
    out["rc"] = script.wait(timeout=5)
    out["script"] = script.report()
    out["qdisc_after"] = root_qdisc()
    return out


def case_errors() -> dict[str, Any]:
    """The script's own error codes for a missing device and for a missing NET_ADMIN."""
    out: dict[str, Any] = {"qdisc_before": root_qdisc()}
    f = Fault("slow")
    f.plan = helper_plan("helper:test", "eth9", f.handle, NETEM)
    script, _ = f.start(deadline_in=60)
    out["no_device_rc"] = script.wait(timeout=5)
    out["no_device"] = script.report()
    f = Fault("slow")
    security = {**f.plan.security, "capabilities": {"drop": ["ALL"]}}
    f.plan = HelperPlan(**{**vars(f.plan), "security": security})
    script, _ = f.start(deadline_in=60)
    out["no_net_admin_rc"] = script.wait(timeout=5)
    out["no_net_admin"] = script.report()
    out["qdisc_after"] = root_qdisc()
    return out


def case_sigkill_then_undo() -> dict[str, Any]:
    f = Fault("slow")
    script, _ = f.start(deadline_in=60)
    script.wait_line("in-effect")
    script.popen.send_signal(signal.SIGKILL)
    out: dict[str, Any] = {"handle": f.handle, "rc": script.wait(timeout=5)}
    time.sleep(0.2)
    out["qdisc_after_kill"] = root_qdisc()
    undo = f.undo()
    out["undo"] = undo.report()
    out["qdisc_after_undo"] = root_qdisc()
    out["connect_ms_after"] = connect_ms()
    return out


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "inject_expire": case_inject_and_expire,
    "early_undo": case_early_undo,
    "sigterm": case_sigterm,
    "second_fault": case_second_fault,
    "later_run_survives": case_later_run_survives,
    "late": case_late,
    "errors": case_errors,
    "sigkill": case_sigkill_then_undo,
}


def reset() -> dict[str, Any]:
    """Kill what a case left running and remove any root qdisc; say what was left."""
    left: dict[str, Any] = {"scripts": [], "qdisc": root_qdisc()}
    for s in Script.running:
        if s.popen.poll() is None:
            left["scripts"].append(s.name)
            s.popen.kill()
            s.popen.wait()
    Script.running.clear()
    sh("ip", "netns", "exec", NS, "tc", "qdisc", "del", "dev", DEV, "root", check=False)
    return left


def setup() -> subprocess.Popen[bytes]:
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", "veth-pod", "type", "veth", "peer", "name", DEV, "netns", NS)
    sh("ip", "addr", "add", "10.77.0.1/24", "dev", "veth-pod")
    sh("ip", "link", "set", "veth-pod", "up")
    sh("ip", "-n", NS, "addr", "add", f"{SERVER[0]}/24", "dev", DEV)
    sh("ip", "-n", NS, "link", "set", DEV, "up")
    sh("ip", "-n", NS, "link", "set", "lo", "up")
    server = subprocess.Popen([
        "ip", "netns", "exec", NS, sys.executable, "-c",
        "import socket\n"
        f"s = socket.create_server({SERVER!r}, backlog=64)\n"
        "while True:\n"
        "    s.accept()[0].close()\n"])
    for _ in range(100):
        try:
            connect_ms(1)
            break
        except OSError:
            time.sleep(0.05)
    return server


def main() -> None:
    only = sys.argv[1:] or list(CASES)
    result: dict[str, Any] = {"cases": {}, "left": {}, "seconds": {}}
    server = setup()
    try:
        for name in only:
            t = time.monotonic()
            try:
                result["cases"][name] = CASES[name]()
            except Exception:
                result["cases"][name] = {"error": traceback.format_exc(),
                                         "scripts": [s.report() for s in Script.running]}
            result["left"][name] = reset()
            result["seconds"][name] = round(time.monotonic() - t, 2)
    finally:
        server.kill()
        server.wait()
    result["pid"] = os.getpid()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
