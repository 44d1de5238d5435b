"""One scenario per (fault kind, platform, variant): a real target, the fault's YAML, and a way to
look at the target that does not ask the runner.

The contract suite (tests/contract/test_contract.py on this machine, tests/k8s/test_kube_contract.py
on the test cluster, tests/guest/test_netem_fault.py in the netem guest) runs every check on
every scenario. :data:`COVERAGE` names, for each (kind, platform) of the registry, the scenarios
that cover it; test_registry_is_covered fails when a registered kind has none.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chaos.platform.local import procs

#: (kind, platform) -> scenario ids; the k8s and guest ones run in their own suites.
COVERAGE: dict[tuple[str, str], list[str]] = {
    ("processKill", "local"): ["process-kill"],
    ("processPause", "local"): ["process-pause"],
    ("networkLatency", "local"): ["proxy-latency", "netem-interface (tests/guest)"],
    ("connectionReset", "local"): ["connection-reset"],
    ("cpuStress", "local"): ["cpu-burners"],
    ("podKill", "kubernetes"): ["pod-kill (tests/k8s)"],
    ("networkLatency", "kubernetes"): ["pod-netem (tests/k8s)"],
    ("cpuStress", "kubernetes"): ["pod-stress (tests/k8s)"],
}

TARGET = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_DFL)
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(0.05)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Greeter:
    """An upstream that speaks first: it sends a line the moment a client connects, so the
    time to the first byte through a proxy is the proxy's own delay."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                conn.sendall(b"hello\n")
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


def first_byte(port: int, timeout: float = 3.0) -> float | str:
    """Seconds to the first byte through 127.0.0.1:port, or what went wrong."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            data = s.recv(1)
    except ConnectionResetError:
        return "reset"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error: {exc}"
    return time.monotonic() - started if data else "closed"


@dataclass
class Scenario:
    """A fault on a real target, and the test's own way of looking at that target."""

    id: str
    kind: str
    #: The fault's YAML block (without name/at/duration), e.g. ``processPause: {...}``.
    fault: str
    #: True when the effect is on the target (looked at without the runner).
    effect: Callable[[], bool]
    #: What the test can name in `chaos plan` output.
    plan_names: list[str]
    one_shot: bool = False
    proxies: str = ""
    #: After the run (or recover, or expiry): things that must not be there.
    leftovers: Callable[[], list[str]] = field(default=lambda: [])
    #: Pids of the runners the test started (their helpers are the test's own).
    runners: list[int] = field(default_factory=list)


def _process(tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    pidfile = tmp / f"{name}.pid"
    proc = subprocess.Popen([sys.executable, "-c", TARGET, str(pidfile)],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("target process did not start")
        time.sleep(0.02)
    return proc, proc.pid, pidfile


def _state(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()[0]


def _processes(module: str, marker: str) -> list[procs.ProcInfo]:
    """Processes running ``python -m module`` whose command line has ``marker`` (a /proc scan
    of its own: the runner's lookups skip the runner's helpers on purpose)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := procs.proc_info(int(entry))) is not None and \
                f"-m {module}" in info.cmdline and marker in info.cmdline:
            found.append(info)
    return found


def _watchdogs(tag: str = "") -> list[str]:
    return [p.describe() for p in _processes("chaos.platform.local._watchdog", tag)]


def _burners(runners: list[int]) -> list[procs.ProcInfo]:
    """The live CPU burners of the runs this test started (each names its runner with
    ``--parent PID``): the test's own, whatever else runs on the machine."""
    return [p for pid in runners
            for p in _processes("chaos.platform.local._burner", f"--parent {pid}")
            if procs.state_of(p) not in (None, "Z")]


def _burning(runners: list[int]) -> bool:
    """Burners exist and use CPU. They run at SCHED_IDLE: on a busy machine they may wait a
    while for a tick, so look for up to 10 s."""
    before = {p.pid: procs.cpu_ticks(p) for p in _burners(runners)}
    deadline = time.monotonic() + 10
    while before and time.monotonic() < deadline:
        time.sleep(0.2)
        if any((procs.cpu_ticks(p) or 0) > (before.get(p.pid) or 0)
               for p in _burners(runners)):
            return True
    return False


@contextmanager
def local_scenario(name: str, tmp: Path) -> Iterator[Scenario]:
    """Build the scenario ``name`` with its real target; tear the target down afterwards."""
    cleanup: list[Callable[[], None]] = []
    try:
        if name in ("process-kill", "process-pause"):
            proc, pid, pidfile = _process(tmp, name)

            def stop() -> None:
                if proc.poll() is None:
                    os.kill(pid, 9)  # SIGCONT is not needed for SIGKILL
                proc.wait(timeout=10)

            cleanup.append(stop)
            if name == "process-kill":
                yield Scenario(
                    name, "processKill",
                    f'processKill: {{target: {{pidfile: "{pidfile}"}}, signal: SIGKILL}}',
                    effect=lambda: proc.poll() is not None or _state(pid) in (None, "Z"),
                    plan_names=[f"pid {pid}"], one_shot=True)
            else:
                yield Scenario(
                    name, "processPause", f'processPause: {{target: {{pidfile: "{pidfile}"}}}}',
                    effect=lambda: _state(pid) == "T", plan_names=[f"pid {pid}"],
                    leftovers=lambda: _watchdogs(f"--sigcont {pid}:"))
        elif name in ("proxy-latency", "connection-reset"):
            upstream = Greeter()
            cleanup.append(upstream.close)
            port = free_port()
            proxies = (f'  proxies:\n    - {{name: front, listen: "127.0.0.1:{port}", '
                       f'upstream: "127.0.0.1:{upstream.port}"}}\n')

            def listening() -> list[str]:
                return [f"proxy still listening on {port}"] if first_byte(port, 0.5) not in (
                    "refused",) else []

            if name == "proxy-latency":
                def slow() -> bool:
                    took = first_byte(port)
                    return isinstance(took, float) and took >= 0.29

                yield Scenario(name, "networkLatency",
                               "networkLatency: {proxy: front, delay: 300ms}", effect=slow,
                               plan_names=[f"127.0.0.1:{port}"], proxies=proxies,
                               leftovers=listening)
            else:
                yield Scenario(name, "connectionReset", "connectionReset: {proxy: front}",
                               effect=lambda: first_byte(port) in ("reset", "closed"),
                               plan_names=[f"127.0.0.1:{port}"], proxies=proxies,
                               leftovers=listening)
        elif name == "cpu-burners":
            runners: list[int] = []
            yield Scenario(name, "cpuStress", "cpuStress: {workers: 1, load: 50%}",
                           effect=lambda: _burning(runners), plan_names=["1 worker(s)"],
                           leftovers=lambda: [p.describe() for p in _burners(runners)],
                           runners=runners)
        else:
            raise KeyError(name)
    finally:
        for fn in reversed(cleanup):
            fn()


LOCAL_SCENARIOS = ["process-kill", "process-pause", "proxy-latency", "connection-reset",
                   "cpu-burners"]


def experiment(scenario: Scenario, *, duration: str = "3s", grace: str = "1s") -> str:
    timing = "" if scenario.one_shot else f"      duration: {duration}\n"
    return (
        "apiVersion: chaos/v1\nkind: Experiment\nmetadata: {name: contract}\nspec:\n"
        "  baseline: 300ms\n  recovery: 300ms\n"
        f"{scenario.proxies}"
        "  probes:\n    - {name: tick, interval: 250ms, command: {argv: [\"true\"]}}\n"
        "  faults:\n    - name: f\n      at: 0s\n"
        f"{timing}"
        f"      {scenario.fault}\n"
        f"  limits: {{maxDuration: 2m, expiryGrace: {grace}, verifyTimeout: 10s}}\n"
    )
