"""Kubernetes helper-container faults (networkLatency, cpuStress on pods): what they ask of the
cluster, what they refuse before touching anything, every way they can fail to take effect,
and the run that loses its Lease. On the test control plane with the kubelet simulator
(tests/k8s/kubelet_sim.py), which runs the helpers for real where this host can.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers_faults import (
    IMAGE,
    cli,
    experiment,
    helper_containers,
    netem_as_scripted,
    run,
    start,
    wait,
    wal_types,
)
from kubelet_sim import Status, Waiting
from test_kube_client import pod_template
from test_kube_faults import deploy

pytestmark = pytest.mark.k8s

STRESS = (f"cpuStress: {{selector: {{labels: {{app: web}}, mode: all}}, workers: 1, load: 20%, "
          f"image: {IMAGE}}}")
NETEM = (f"networkLatency: {{selector: {{labels: {{app: web}}, mode: all}}, delay: 150ms, "
         f"image: {IMAGE}}}")


def one(name: str, fault: str, duration: str = "3s", at: str = "0s") -> str:
    return f"- name: {name}\n  at: {at}\n  duration: {duration}\n  {fault}\n"


def deploy_template(cluster: Any, ns: str, template: dict[str, Any]) -> None:
    """A one-pod Deployment 'web' from ``template``, running."""
    from kubernetes import client

    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": template}}
    with cluster.api_client() as api:
        client.AppsV1Api(api).create_namespaced_deployment(ns, body)
    wait("the pod running", lambda: bool(cluster.kubectl(
        "get", "pods", "-n", ns, "--field-selector=status.phase=Running", "-o",
        "name").stdout.strip()), 60)


def no_helpers(cluster: Any, ns: str) -> bool:
    return all(not cs for cs in helper_containers(cluster, ns).values())


# ------------------------------------------------------------------------------------- the spec


def test_helpers_ask_for_exactly_what_they_need(kube_cluster: Any, k8s_namespace: str,
                                                kubelet_sim: Any, tmp_path: Path) -> None:
    kubelet_sim.policy(netem_as_scripted(3.0))
    deploy(kube_cluster, k8s_namespace, 1)
    text = experiment(k8s_namespace, one("slow", NETEM) + one("burn", STRESS))
    result, journal = run(kube_cluster, tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    (containers,) = helper_containers(kube_cluster, k8s_namespace).values()
    run8 = journal["run_id"][:8]
    by_name = {c["name"]: c for c in containers}
    # Named per run and fault, so two faults (of one kind or two) never collide.
    assert set(by_name) == {f"chaos-{run8}-slow", f"chaos-{run8}-slow-undo",
                            f"chaos-{run8}-burn", f"chaos-{run8}-burn-undo"}
    netem = by_name[f"chaos-{run8}-slow"]["securityContext"]
    assert netem["runAsUser"] == 0 and netem["runAsNonRoot"] is False
    assert netem["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert netem["allowPrivilegeEscalation"] is False
    stress = by_name[f"chaos-{run8}-burn"]["securityContext"]
    assert stress == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                      "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                      "seccompProfile": {"type": "RuntimeDefault"}}
    for c in containers:
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert c["targetContainerName"] == "app" and c["image"] == IMAGE
    script = by_name[f"chaos-{run8}-slow"]["command"][2]
    handle = journal["faults"][0]["revert_state"]["handle"]
    assert f'handle={handle}' in script and "netem delay 150ms" in script
    assert by_name[f"chaos-{run8}-slow"]["command"][3] == f"chaos-fault-chaos-{run8}-slow"
    # The stress helper really ran as the non-root user, with stress-ng, and ended with exit 0.
    record = kubelet_sim.record(f"chaos-{run8}-burn")
    assert record.uid == 65532 and record.exit_code == 0
    assert "CPU worker(s)" in journal["faults"][1]["effect"]


def test_two_faults_of_one_kind_on_one_pod(kube_cluster: Any, k8s_namespace: str,
                                           kubelet_sim: Any, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 1)
    text = experiment(k8s_namespace, one("burn-a", STRESS, duration="6s")
                      + one("burn-b", STRESS, duration="2s", at="1s"))
    result, journal = run(kube_cluster, tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    a, b = journal["faults"]
    assert a["verified_at"] and b["verified_at"]
    # b was undone while a kept burning: a's helper ran to its own end, exit 0.
    run8 = journal["run_id"][:8]
    rec_a, rec_b = kubelet_sim.record(f"chaos-{run8}-burn-a"), kubelet_sim.record(
        f"chaos-{run8}-burn-b")
    assert rec_a.exit_code == 0 and rec_b.exit_code == 0
    assert rec_b.finished_at < rec_a.finished_at
    assert rec_a.pid_namespace == rec_b.pid_namespace, "they share the target's namespace"


# ------------------------------------------------------------------- refused before anything


def test_the_unpublished_default_image_is_refused_at_preflight(
        kube_cluster: Any, k8s_namespace: str, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 1)
    text = experiment(k8s_namespace, one("burn", STRESS.replace(f", image: {IMAGE}", "")))
    result, journal = run(kube_cluster, tmp_path, text)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not published yet" in result.stdout and "docker/helper.Dockerfile" in result.stdout
    assert journal["status"] == "error" and not journal["faults"][0]["injected_at"]
    assert no_helpers(kube_cluster, k8s_namespace)


def test_pod_security_refuses_netem_at_preflight_and_admits_stress(
        kube_cluster: Any, k8s_namespace: str, kubelet_sim: Any, tmp_path: Path) -> None:
    kube_cluster.kubectl("label", "namespace", k8s_namespace,
                         "pod-security.kubernetes.io/enforce=baseline")
    deploy(kube_cluster, k8s_namespace, 1)
    result, journal = run(kube_cluster, tmp_path, experiment(k8s_namespace, one("slow", NETEM)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "violates PodSecurity" in result.stdout
    assert "pod-security.kubernetes.io/enforce=privileged" in result.stdout
    assert "dry-run; nothing was changed" in result.stdout
    assert no_helpers(kube_cluster, k8s_namespace)
    # Stress asks only for what the restricted level allows: admitted here, and in effect.
    result, journal = run(kube_cluster, tmp_path, experiment(k8s_namespace, one("burn", STRESS)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert journal["faults"][0]["verified_at"]


def test_non_root_pods_are_refused_for_netem_at_preflight(kube_cluster: Any, k8s_namespace: str,
                                                          tmp_path: Path) -> None:
    template = pod_template(kube_cluster, {"app": "web"})
    template["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000}
    deploy_template(kube_cluster, k8s_namespace, template)
    result, _ = run(kube_cluster, tmp_path, experiment(k8s_namespace, one("slow", NETEM)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "runs as non-root (runAsNonRoot: true)" in result.stdout
    assert "tc netem needs root and NET_ADMIN" in result.stdout
    assert no_helpers(kube_cluster, k8s_namespace)


# ----------------------------------------------------------------- not in effect: never a pass


def _not_in_effect(result: subprocess.CompletedProcess[str], journal: dict[str, Any]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert journal["status"] == "error" and journal["abort"]["cause"] == "not-in-effect"
    assert [r["name"] for r in journal["rollbacks"]] == ["mark"]
    assert "NOT IN EFFECT" in result.stdout
    cause: str = journal["faults"][0]["not_in_effect"]
    return cause


ROLLBACK = "- {name: mark, command: {argv: [\"true\"]}}"


def test_a_node_without_sch_netem_is_named(kube_cluster: Any, k8s_namespace: str,
                                           kubelet_sim: Any, tmp_path: Path) -> None:
    # The helper runs for real on this host, whose kernel has no sch_netem (in the simulated
    # pod's network namespace, which has only lo).
    deploy(kube_cluster, k8s_namespace, 1)
    netem = NETEM.replace("delay: 150ms", "delay: 150ms, device: lo")
    text = experiment(k8s_namespace, one("slow", netem, duration="10s"), rollbacks=ROLLBACK)
    started = time.monotonic()
    result, journal = run(kube_cluster, tmp_path, text)
    cause = _not_in_effect(result, journal)
    assert "this node's kernel has no sch_netem" in cause
    assert "kernel-modules-extra" in result.stdout
    assert time.monotonic() - started < 25, "the cause is definitive: no waiting it out"
    # The helper never applied anything: its revert is clean (no REVERT FAILED).
    fault = journal["faults"][0]
    assert fault["reverted_at"] and "never applied the fault" in fault["revert_verified"]


def test_a_pod_without_the_device_is_named(kube_cluster: Any, k8s_namespace: str,
                                           kubelet_sim: Any, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 1)
    netem = NETEM.replace("delay: 150ms", "delay: 150ms, device: eth7")
    result, journal = run(kube_cluster, tmp_path, experiment(
        k8s_namespace, one("slow", netem), rollbacks=ROLLBACK))
    cause = _not_in_effect(result, journal)
    assert "the pod has no such network interface" in cause and "eth7" in cause
    assert "set `device:` in the fault" in result.stdout


@pytest.mark.parametrize(("waiting", "expected"), [
    (Waiting("ErrImagePull", f'rpc error: failed to pull image "{IMAGE}": not found'),
     f"the helper image {IMAGE} could not be pulled (ErrImagePull)"),
    (Waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'), "could not be pulled"),
    (Waiting("CreateContainerConfigError",
             "container's runAsUser breaks non-root policy (pod: web, container: x)"),
     "the pod runs as non-root; stress-ng runs as a non-root user"),
    (Waiting("RunContainerError", 'exec: "sh": executable file not found in $PATH'),
     "the kubelet could not start the helper (RunContainerError)"),
], ids=["image-pull", "image-backoff", "non-root", "no-shell"])
def test_a_helper_the_kubelet_cannot_start_is_named(kube_cluster: Any, k8s_namespace: str,
                                                    kubelet_sim: Any, tmp_path: Path,
                                                    waiting: Waiting, expected: str) -> None:
    kubelet_sim.policy(lambda pod, c: None if c["name"].endswith("-undo")
                       else Status([waiting]))
    deploy(kube_cluster, k8s_namespace, 1)
    result, journal = run(kube_cluster, tmp_path,
                          experiment(k8s_namespace, one("burn", STRESS), rollbacks=ROLLBACK))
    assert expected in _not_in_effect(result, journal)


# ----------------------------------------------------------------------------- losing the Lease


def test_a_run_that_loses_its_lease_stops_and_reverts(kube_cluster: Any, k8s_namespace: str,
                                                      kubelet_sim: Any, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 1)
    runner = start(kube_cluster, tmp_path, experiment(
        k8s_namespace, one("burn", STRESS, duration="40s"), rollbacks=ROLLBACK))
    try:
        wait("the fault in effect", lambda: "verified" in wal_types(tmp_path / "state", "burn"),
             60)
        # Another runner takes the Lease over (as a second game day would, were it expired).
        kube_cluster.kubectl("patch", "lease", "chaos-runner", "-n", k8s_namespace,
                             "--type=merge", "-p",
                             '{"spec": {"holderIdentity": "someone-else"}}')
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 1, out + err
    journal = json.loads((tmp_path / "run.json").read_text())
    assert journal["abort"]["cause"] == "platform-lost"
    assert "lost its Lease" in journal["message"] and "someone-else" in journal["message"]
    assert journal["faults"][0]["reverted_at"] and journal["faults"][0]["revert_verified"]
    assert journal["rollbacks"][0]["ok"]


def test_recover_aims_the_undo_at_the_faults_own_container(kube_cluster: Any,
                                                           k8s_namespace: str, kubelet_sim: Any,
                                                           tmp_path: Path) -> None:
    """The helper joins the container named in the fault (not the pod's first one); the revert
    and `chaos recover` aim the undo at the same one, from the journal."""
    template = pod_template(kube_cluster, {"app": "web"})
    template["spec"]["containers"].append({"name": "sidecar", "image": "fake/sidecar"})
    deploy_template(kube_cluster, k8s_namespace, template)
    fault = STRESS.replace("workers: 1", "workers: 1, container: sidecar")
    runner = start(kube_cluster, tmp_path, experiment(k8s_namespace, one("burn", fault, "60s")))
    try:
        wait("the fault in effect", lambda: "verified" in wal_types(tmp_path / "state", "burn"),
             60)
        runner.kill()
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    result = cli(kube_cluster, tmp_path, "recover", "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stdout + result.stderr
    (containers,) = helper_containers(kube_cluster, k8s_namespace).values()
    assert {c["targetContainerName"] for c in containers} == {"sidecar"}
    helper = next(c for c in containers if not c["name"].endswith("-undo"))
    record = kubelet_sim.wait_for(helper["name"], timeout=60)
    assert record.exit_code == 0, "the undo, in the sidecar's namespace, stopped the helper"
    bad = STRESS.replace("workers: 1", "workers: 1, container: nope")
    result, _ = run(kube_cluster, tmp_path, experiment(k8s_namespace, one("burn", bad)))
    assert result.returncode == 2 and "has no container 'nope'" in result.stdout
    assert "(it has: app, sidecar)" in result.stdout


def test_a_helper_killed_before_removing_its_fault_is_a_failed_revert(
        kube_cluster: Any, k8s_namespace: str, kubelet_sim: Any, tmp_path: Path) -> None:
    """A helper that confirmed its fault and was then killed (OOM, a node problem) cannot have
    removed it: exit 4, REVERT FAILED, the cause and what to do. (The netem qdisc of such a
    helper is what the undo container's belt removes; here the state is written, see
    helpers_faults.py.)"""
    from kubelet_sim import Exec, Log, Running, Sleep, Terminated

    def rule(pod: Any, c: Any) -> Any:
        if c["name"].endswith("-undo"):
            return Exec(timeout=30)
        return Status([Waiting("ContainerCreating"), Running(),
                       Log("chaos-runner: in-effect: qdisc netem 1abc: root delay 150ms"),
                       Sleep(0.5), Terminated(137, reason="OOMKilled")])

    kubelet_sim.policy(rule)
    deploy(kube_cluster, k8s_namespace, 1)
    result, journal = run(kube_cluster, tmp_path, experiment(k8s_namespace, one("slow", NETEM)))
    assert result.returncode == 4, result.stdout + result.stderr
    assert journal["verdict"] == "REVERT FAILED" and journal["status"] == "error"
    fault = journal["faults"][0]
    assert "was ended (code 137) before it could remove the fault" in fault["revert_error"]
    assert "REVERT FAILED for: slow" in result.stdout
