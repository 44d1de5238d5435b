"""The ephemeral-container faults on the real node: the exact scripts run in a container the
kubelet starts, and their effect (or its absence) is read off the host: the pod's cgroup CPU
time, the processes in it, the qdiscs in its network namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import realnode
from realnode_kit import (
    apply,
    cgroup_processes,
    chaos,
    cpu_rate,
    demo_app,
    journal,
    pod_cgroup,
    pods,
    wait,
    wait_ready,
)

pytestmark = [pytest.mark.k8s, pytest.mark.realnode]


def experiment(ns: str, fault: str, *, recovery: str = "2s", baseline: str = "2s") -> str:
    return f"""\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: real-helper-fault}}
spec:
  target: {{platform: kubernetes, namespace: {ns}}}
  baseline: {baseline}
  recovery: {recovery}
  probes:
    - name: ready
      interval: 500ms
      kubernetes: {{pods: {{selector: {{app: web}}, ready: ">= 1"}}}}
  slos:
    - {{name: up, probe: ready, successRate: ">= 50%", window: 10s}}
  faults:
{fault}
  limits: {{maxDuration: 3m, maxPods: 1}}
"""


def stress(duration: str, image: str = realnode.IMAGES["helper"], load: str = "80%") -> str:
    return f"""\
    - name: burn
      cpuStress: {{selector: {{labels: {{app: web}}, mode: one}}, workers: 1, load: {load}, image: "{image}"}}
      at: 1s
      duration: {duration}"""


LATENCY = f"""\
    - name: slow
      networkLatency: {{selector: {{labels: {{app: web}}, mode: one}}, delay: 100ms, image: "{realnode.IMAGES['helper']}"}}
      at: 1s
      duration: 20s"""


def ephemeral_states(cluster: Any, ns: str) -> list[dict[str, Any]]:
    out = []
    for p in pods(cluster, ns):
        out += p["status"].get("ephemeralContainerStatuses", [])
    return out


def helpers_running(cluster: Any, ns: str) -> list[str]:
    return [s["name"] for s in ephemeral_states(cluster, ns) if "running" in s.get("state", {})]


def test_cpu_stress_burns_in_the_pods_cgroup_and_stops_at_revert(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    apply(kube_cluster, demo_app(ns), tmp_path)
    pod = wait_ready(kube_cluster, ns, 1)[0]
    cg = pod_cgroup(pod)
    idle = cpu_rate(cg, 1.5)
    assert idle < 0.15, f"the demo app should be idle, uses {idle:.2f} cores"
    run = chaos(kube_cluster, tmp_path, experiment(ns, stress("12s")), background=True)
    try:
        wait("stress-ng in the pod's cgroup", lambda: "stress-ng" in cgroup_processes(cg), 60)
        busy = cpu_rate(cg, 3.0)
        rc = run.wait(120)
    finally:
        if run.poll() is None:
            run.kill()
    out = (tmp_path / "out.log").read_text()
    assert rc == 0, out
    # One worker at 80% of a core (stress-ng's --cpu-load duty cycle), read from the cgroup.
    assert 0.55 <= busy <= 1.1, f"{busy:.2f} cores during the stress"
    after = wait("the pod's CPU back to idle", lambda: (r := cpu_rate(cg, 1.0)) < 0.15 and r + 1e-9, 20)
    assert "stress-ng" not in cgroup_processes(cg)
    data = journal(tmp_path)
    assert data["status"] == "passed"
    [fault] = data["faults"]
    assert fault["verified_at"] and fault["reverted_at"], fault
    # The fault's helper exited 0 after removing its fault (the undo container asked it to).
    states = {s["name"]: s for s in ephemeral_states(kube_cluster, ns)}
    [helper] = [s for n, s in states.items() if not n.endswith("-undo")]
    assert helper["state"]["terminated"]["exitCode"] == 0, states
    print(f"cpuStress on the real node: idle {idle:.2f}, busy {busy:.2f}, after {after:.2f} cores")


def test_cpu_stress_ends_by_itself_when_the_runner_is_killed(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    apply(kube_cluster, demo_app(ns), tmp_path)
    cg = pod_cgroup(wait_ready(kube_cluster, ns, 1)[0])
    run = chaos(kube_cluster, tmp_path, experiment(ns, stress("10s")), background=True)
    try:
        wait("stress-ng in the pod's cgroup", lambda: "stress-ng" in cgroup_processes(cg), 60)
        t_seen = time.monotonic()
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
    # Nobody reverts: the script's own deadline (10 s after inject) ends it.
    assert cpu_rate(cg, 1.0) > 0.4, "the stress should outlive the runner until its deadline"
    wait("stress-ng gone at its deadline", lambda: "stress-ng" not in cgroup_processes(cg), 40)
    gone_after = time.monotonic() - t_seen
    assert gone_after <= 10 + 12, f"stress lasted {gone_after:.1f}s after it was seen"
    wait("the helper container exited 0", lambda: any(
        s["state"].get("terminated", {}).get("exitCode") == 0 for s in ephemeral_states(kube_cluster, ns)), 20)
    assert cpu_rate(cg, 1.0) < 0.15


def _pod_pids(cg: Path) -> list[int]:
    return [int(p) for f in cg.rglob("cgroup.procs") for p in f.read_text().split()]


def test_network_latency_without_sch_netem_fails_verification_and_leaves_nothing(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    """This host's kernel has no sch_netem (the delay itself is proven in the UML guest)."""
    ns = k8s_namespace
    apply(kube_cluster, demo_app(ns), tmp_path)
    cg = pod_cgroup(wait_ready(kube_cluster, ns, 1)[0])
    result = chaos(kube_cluster, tmp_path, experiment(ns, LATENCY))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "this node's kernel has no sch_netem" in out
    data = journal(tmp_path)
    assert data["status"] == "error"
    assert helpers_running(kube_cluster, ns) == []
    pid = _pod_pids(cg)[0]
    qd = subprocess.run(["nsenter", "-t", str(pid), "-n", "tc", "qdisc", "show"],
                        capture_output=True, text=True, check=True).stdout
    assert "netem" not in qd, qd


def test_a_non_root_target_is_refused_before_anything_is_touched(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    apply(kube_cluster, demo_app(ns, pod_security={"runAsNonRoot": True, "runAsUser": 65532}), tmp_path)
    wait_ready(kube_cluster, ns, 1)
    result = chaos(kube_cluster, tmp_path, experiment(ns, LATENCY))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "runs as non-root (runAsNonRoot: true)" in out
    for p in pods(kube_cluster, ns):
        assert not p["spec"].get("ephemeralContainers"), "nothing may be added to the pod"


def test_a_helper_image_that_cannot_be_pulled_is_reported_and_never_starts_later(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    apply(kube_cluster, demo_app(ns), tmp_path)
    cg = pod_cgroup(wait_ready(kube_cluster, ns, 1)[0])
    missing = "chaos.test/helper:no-such-tag"
    result = chaos(kube_cluster, tmp_path, experiment(ns, stress("20s", image=missing)))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert f"the helper image {missing} could not be pulled" in out
    assert journal(tmp_path)["status"] == "error"
    assert helpers_running(kube_cluster, ns) == []
    assert "stress-ng" not in cgroup_processes(cg)
    states = ephemeral_states(kube_cluster, ns)
    assert states and all("running" not in s["state"] for s in states), json.dumps(states)
