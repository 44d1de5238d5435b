"""The fault-kind contract on the test cluster, for every Kubernetes kind (see
tests/contract/test_contract.py for the local kinds and what each check means):

- ``chaos plan`` touches nothing (no helper container, no pod deleted) and names every pod;
- a run journals the intent before the inject, sees the effect (pod uids gone; the helper
  running and its script confirming the fault), and sees it gone after the revert (the helper
  exited 0 after its undo container stopped it);
- SIGKILL mid-fault then ``chaos recover``: nothing is left;
- SIGKILL without recover: the helper ends the fault by itself at its deadline.

cpuStress helpers run for real on the simulated node (stress-ng in the pod's process
namespace); the netem helper reports what its script reports (see helpers_faults.py).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
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
    sigkill,
    start,
    wait,
    wal,
    wal_types,
)
from test_kube_faults import deploy, uids

pytestmark = pytest.mark.k8s

DURATION = 4.0


@dataclass
class K8sScenario:
    id: str
    kind: str
    fault: str
    one_shot: bool = False
    pods: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


SCENARIOS = [
    K8sScenario("pod-kill", "podKill",
                "podKill: {selector: {labels: {app: web}, mode: one}, gracePeriod: 0s}",
                one_shot=True),
    K8sScenario("pod-stress", "cpuStress",
                f"cpuStress: {{selector: {{labels: {{app: web}}, mode: all}}, workers: 1, "
                f"load: 30%, image: {IMAGE}}}"),
    K8sScenario("pod-netem", "networkLatency",
                f"networkLatency: {{selector: {{labels: {{app: web}}, mode: all}}, delay: 150ms, "
                f"image: {IMAGE}}}"),
]


@pytest.fixture(params=SCENARIOS, ids=[s.id for s in SCENARIOS])
def scenario(request: pytest.FixtureRequest, kube_cluster: Any, k8s_namespace: str,
             kubelet_sim: Any) -> K8sScenario:
    s: K8sScenario = request.param
    if s.kind == "networkLatency":
        kubelet_sim.policy(netem_as_scripted(DURATION))
    deploy(kube_cluster, k8s_namespace, s.pods)
    return s


def _text(ns: str, s: K8sScenario, duration: float = DURATION) -> str:
    timing = "" if s.one_shot else f"  duration: {duration:g}s\n"
    return experiment(ns, f"- name: f\n  at: 0s\n{timing}  {s.fault}\n")


def _stress_running(sim: Any) -> list[str]:
    """stress-ng processes still alive in the simulated pods (the test's own look)."""
    return [p for p in sim.leftovers().get("processes", [])
            if p.split(": ", 1)[-1].startswith("stress-ng")]


def test_plan_touches_nothing_and_names_every_pod(scenario: K8sScenario, kube_cluster: Any,
                                                  k8s_namespace: str, tmp_path: Path) -> None:
    before = uids(kube_cluster, k8s_namespace)
    exp = tmp_path / "exp.yaml"
    exp.write_text(_text(k8s_namespace, scenario))
    result = cli(kube_cluster, tmp_path, "plan", str(exp))
    assert result.returncode == 0, result.stderr
    assert f"[{scenario.kind}]" in result.stdout
    pods = sorted(before) if scenario.kind != "podKill" else [
        n for n in before if n in result.stdout]
    assert pods, result.stdout
    for name in pods:
        assert f"{k8s_namespace}/{name}" in result.stdout
    assert uids(kube_cluster, k8s_namespace) == before, "a plan deletes nothing"
    assert all(not cs for cs in helper_containers(kube_cluster, k8s_namespace).values()), \
        "a plan adds no helper (its dry-run persists nothing)"


def test_intent_first_effect_seen_then_gone(scenario: K8sScenario, kube_cluster: Any,
                                            k8s_namespace: str, kubelet_sim: Any,
                                            tmp_path: Path) -> None:
    before = uids(kube_cluster, k8s_namespace)
    result, journal = run(kube_cluster, tmp_path, _text(k8s_namespace, scenario))
    assert result.returncode == 0, result.stdout + result.stderr
    fault = journal["faults"][0]
    assert fault["verified_at"] and fault["effect"] and fault["not_in_effect"] is None
    types = wal_types(tmp_path / "state", "f")
    assert types[0] == "intent"
    from chaos.faults.registry import fault_kind

    kind = fault_kind(scenario.kind)
    assert kind is not None
    for entry in wal(tmp_path / "state"):
        if entry.get("fault") == "f" and "revert_state" in entry:
            kind.load_state(entry["revert_state"])
    if scenario.one_shot:
        assert types == ["intent", "done", "verified"]
        killed = [n for n in before if n not in uids(kube_cluster, k8s_namespace)]
        assert len(killed) == 1 and "pod uid(s) gone" in fault["effect"]
        return
    assert types == ["intent", "applied", "verified", "reverted"]
    assert fault["revert_verified"]
    helpers = helper_containers(kube_cluster, k8s_namespace)
    assert set(helpers) == set(before)
    for containers in helpers.values():
        fault_c = next(c for c in containers if not c["name"].endswith("-undo"))
        undo_c = next(c for c in containers if c["name"].endswith("-undo"))
        assert fault_c["status"]["state"]["terminated"]["exitCode"] == 0
        assert undo_c["status"]["state"]["terminated"]["exitCode"] == 0
        assert fault_c["targetContainerName"] == undo_c["targetContainerName"] == "app"
    if scenario.kind == "cpuStress":
        assert "CPU worker(s)" in fault["effect"]
        assert _stress_running(kubelet_sim) == []
    else:
        assert f"netem {fault['revert_state']['handle']}:" in fault["effect"]


@pytest.mark.parametrize("recover", [True, False], ids=["then-recover", "expiry"])
def test_sigkill_mid_fault_leaves_nothing(scenario: K8sScenario, kube_cluster: Any,
                                          k8s_namespace: str, kubelet_sim: Any,
                                          tmp_path: Path, recover: bool) -> None:
    running = scenario
    if scenario.one_shot and not recover:
        # What lasts of a kill is its repetition (`every`): it must die with the runner.
        running = dataclasses.replace(scenario, one_shot=False, fault=scenario.fault.replace(
            "gracePeriod: 0s}", "gracePeriod: 0s, every: 1s}"))
    text = _text(k8s_namespace, running, duration=8.0)
    state = tmp_path / "state"
    runner = start(kube_cluster, tmp_path, text)
    try:
        wait("the fault in effect", lambda: "verified" in wal_types(state, "f"), 60)
        if scenario.kind == "cpuStress":
            assert _stress_running(kubelet_sim), "the helper's stress-ng is running"
        sigkill(runner)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    if recover:
        result = cli(kube_cluster, tmp_path, "recover", "--state-dir", str(state))
        assert result.returncode == 0, result.stdout + result.stderr
        if not scenario.one_shot:
            assert "added the undo container" in result.stdout
    if scenario.one_shot:
        if not recover:
            time.sleep(2.0)  # the Deployment replaces the killed pod
            survivors = uids(kube_cluster, k8s_namespace)
            time.sleep(3.0)  # three more rounds of `every: 1s`, had the kill outlived the runner
            now = uids(kube_cluster, k8s_namespace)
            assert set(survivors) <= set(now), "a kill went on after the runner died"
        return

    def helpers_done() -> bool:
        for containers in helper_containers(kube_cluster, k8s_namespace).values():
            fault_c = next(c for c in containers if not c["name"].endswith("-undo"))
            if fault_c["status"].get("state", {}).get("terminated", {}).get("exitCode") != 0:
                return False
        return True

    # With recover: the undo stops the helper at once; without: the helper's own deadline.
    wait("every helper to end its fault and exit 0", helpers_done, 8.0 + 30)
    if scenario.kind == "cpuStress":
        wait("no stress-ng left", lambda: _stress_running(kubelet_sim) == [], 15)
    journal = json.loads((tmp_path / "run.json").read_text()) if (
        tmp_path / "run.json").exists() else {}
    assert journal.get("status") in (None, "running")  # the run itself never finished
