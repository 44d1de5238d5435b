"""Shared by the Kubernetes fault tests: running the CLI, reading its journals, and the kubelet
simulator policies for helper containers.

On the simulated node (tests/k8s/kubelet_sim.py) the CPU stress helper and every undo container
run for real: the generated scripts, stress-ng, pkill in the pod's shared process namespace. This
host's kernel has no sch_netem, so a netem helper run for real reports exactly that (the
not-in-effect test uses it); where a test needs netem *in effect*, :func:`netem_as_scripted`
writes the status and log lines the real script gives, which tests/guest/test_pod_scripts.py
proves for real inside a kernel that has netem.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubelet_sim import Exec, Log, Running, Sleep, Status, Terminated, Waiting

REPO = Path(__file__).resolve().parents[2]
#: Any name: on the simulated node no image is pulled. (The default image is refused at
#: preflight: it is not published yet.)
IMAGE = "registry.test/chaos-runner/helper:test"


def experiment(ns: str, faults: str, *, baseline: str = "1s", recovery: str = "1s",
               limits: str = "{maxDuration: 2m, verifyTimeout: 20s, expiryGrace: 2s}",
               rollbacks: str = "") -> str:
    head = [
        "apiVersion: chaos/v1", "kind: Experiment", "metadata: {name: helper-test}", "spec:",
        f"  target: {{platform: kubernetes, namespace: {ns}}}",
        f"  baseline: {baseline}", f"  recovery: {recovery}",
        "  probes:",
        "    - name: available",
        "      interval: 250ms",
        '      kubernetes: {deployment: {name: web, available: ">= 0"}}',
        "  faults:",
    ]
    body = textwrap.indent(textwrap.dedent(faults).strip("\n"), "    ").splitlines()
    if rollbacks:
        body += ["  rollbacks:"]
        body += textwrap.indent(textwrap.dedent(rollbacks).strip("\n"), "    ").splitlines()
    return "\n".join([*head, *body, f"  limits: {limits}"]) + "\n"


def cli(cluster: Any, tmp: Path, command: str, *args: str,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaos", command, *args, "--kubeconfig", cluster.kubeconfig],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, "XDG_STATE_HOME": str(tmp / "xdg"), "CHAOS_HELPER_IMAGE": IMAGE})


def run(cluster: Any, tmp: Path, text: str) -> tuple[subprocess.CompletedProcess[str],
                                                     dict[str, Any]]:
    exp = tmp / "exp.yaml"
    exp.write_text(text)
    journal = tmp / "run.json"
    journal.unlink(missing_ok=True)
    result = cli(cluster, tmp, "run", str(exp), "--journal", str(journal), "--state-dir",
                 str(tmp / "state"), "--log-format", "json")
    return result, (json.loads(journal.read_text()) if journal.exists() else {})


def start(cluster: Any, tmp: Path, text: str) -> subprocess.Popen[str]:
    exp = tmp / "exp.yaml"
    exp.write_text(text)
    return subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", str(exp), "--journal", str(tmp / "run.json"),
         "--state-dir", str(tmp / "state"), "--log-format", "json", "--kubeconfig",
         cluster.kubeconfig],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "XDG_STATE_HOME": str(tmp / "xdg")})


def wal(state: Path) -> list[dict[str, Any]]:
    from chaos.journal.wal import read_records

    runs = sorted((state / "runs").glob("*.jsonl"))
    return read_records(runs[0]) if runs else []


def wal_types(state: Path, fault: str) -> list[str]:
    return [str(r["type"]) for r in wal(state) if r.get("fault") == fault]


def wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def sigkill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def pod_objects(cluster: Any, ns: str, labels: str = "app=web") -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", labels, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def helper_containers(cluster: Any, ns: str) -> dict[str, list[dict[str, Any]]]:
    """Per pod name, its ephemeral containers (spec) joined with their status."""
    result: dict[str, list[dict[str, Any]]] = {}
    for pod in pod_objects(cluster, ns):
        statuses = {s["name"]: s for s in pod.get("status", {}).get(
            "ephemeralContainerStatuses") or []}
        result[pod["metadata"]["name"]] = [
            {**c, "status": statuses.get(c["name"], {})}
            for c in pod["spec"].get("ephemeralContainers") or []]
    return result


def netem_as_scripted(duration: float, *, delay: str = "150ms") -> Callable[
        [Mapping[str, Any], Mapping[str, Any]], Any]:
    """A kubelet_sim rule: a netem helper says what the real script says in a kernel with netem
    (its in-effect line with its own handle, then at its deadline the removal, exit 0); the undo
    container runs for real."""

    def rule(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Any:
        name = str(container["name"])
        if name.endswith("-undo"):
            return Exec(timeout=30)
        script = str(container["command"][2])
        if "netem" not in script:
            return None
        match = re.search(r"^handle=([0-9a-f]+)$", script, re.M)
        handle = match.group(1) if match else "?"
        return Status([
            Waiting("ContainerCreating"), Running(),
            Log(f"chaos-runner: in-effect: qdisc netem {handle}: root refcnt 2 limit 1000 "
                f"delay {delay}"),
            Sleep(duration),
            Log(f"chaos-runner: reverted: deadline reached: removed netem {handle}: from eth0"),
            Terminated(0),
        ])

    return rule
