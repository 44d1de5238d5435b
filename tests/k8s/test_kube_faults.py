"""Kubernetes faults and probes through the real CLI, against the real test control plane.

kwok runs no containers: pod kills and recoveries are real (controllers recreate pods, kwok
marks them Ready), while latency and CPU stress are checked on the API objects they create.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers_faults import IMAGE
from test_kube_client import (
    create_deployment,
    pod_uid,
    ready_deployment,
    run,
    service_account_kubeconfig,
    wait_until,
)

from chaos.model import load_experiment_text
from chaos.platform.kubernetes import KubeClient
from chaos.targets.kubernetes import KubePlatform

pytestmark = pytest.mark.k8s
REPO = Path(__file__).resolve().parents[2]


def experiment(ns: str, faults: str, *, slos: str = "", baseline: str = "1s",
               recovery: str = "3s", limits: str = "{maxDuration: 2m}",
               probe_interval: str = "200ms") -> str:
    """An experiment with an availability probe on Deployment 'web'; ``faults`` and ``slos``
    are YAML list items (any common indentation)."""
    slos = slos or "- {name: recovered, probe: available, successRate: '>= 1%', window: 3s}"
    head = [
        "apiVersion: chaos/v1",
        "kind: Experiment",
        "metadata: {name: k8s-test}",
        "spec:",
        f"  target: {{platform: kubernetes, namespace: {ns}}}",
        f"  baseline: {baseline}",
        f"  recovery: {recovery}",
        "  probes:",
        "    - name: available",
        f"      interval: {probe_interval}",
        '      kubernetes: {deployment: {name: web, available: "== desired"}}',
        "  slos:",
    ]
    body = textwrap.indent(textwrap.dedent(slos).strip("\n"), "    ").splitlines()
    body += ["  faults:"]
    body += textwrap.indent(textwrap.dedent(faults).strip("\n"), "    ").splitlines()
    body += [f"  limits: {limits}"]
    return "\n".join(head + body) + "\n"


def chaos(cluster: Any, tmp_path: Path, text: str, *args: str, kubeconfig: str | None = None,
          command: str = "run") -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    journal = tmp_path / "run.json"
    journal.unlink(missing_ok=True)
    extra = ["--journal", str(journal), "--state-dir", str(tmp_path / "state"),
             "--log-format", "json"] if command == "run" else []
    result = subprocess.run(
        [sys.executable, "-m", "chaos", command, str(exp), "--kubeconfig",
         kubeconfig or cluster.kubeconfig, *extra, *args],
        capture_output=True, text=True, timeout=180,
    )
    data = json.loads(journal.read_text()) if journal.exists() else {}
    return result, data


def uids(cluster: Any, ns: str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        kc = await KubeClient.connect(cluster.kubeconfig)
        try:
            return {p.name: p.uid for p in await kc.list_pods(ns, labels={"app": "web"})}
        finally:
            await kc.close()

    return run(go())


def deploy(cluster: Any, ns: str, replicas: int, name: str = "web") -> None:
    create_deployment(cluster, ns, name, replicas)

    async def go() -> None:
        kc = await KubeClient.connect(cluster.kubeconfig)
        try:
            await ready_deployment(kc, ns, name, replicas)
        finally:
            await kc.close()

    run(go())


@pytest.mark.parametrize(("mode", "expected"), [("one", 1), ("all", 4), ("{fixed: 3}", 3),
                                                 ("{percent: 50%}", 2), ("{percent: 10%}", 1)])
def test_pod_selection_modes(kube_cluster: Any, k8s_namespace: str, mode: str,
                             expected: int) -> None:
    deploy(kube_cluster, k8s_namespace, 4)
    text = experiment(k8s_namespace, f"""\
        - name: kill
          podKill: {{selector: {{labels: {{app: web}}, mode: {mode}}}}}
        """)
    exp = load_experiment_text(text)

    async def go() -> list[str]:
        async def connect() -> KubeClient:
            return await KubeClient.connect(kube_cluster.kubeconfig)

        platform = KubePlatform(exp, "r-modes", connect=connect)
        try:
            fault = await platform.plan_fault(exp.spec.faults[0])
            return fault.targets()
        finally:
            await platform.close()

    targets = run(go())
    assert len(targets) == expected
    assert all(t.startswith(f"pod {k8s_namespace}/web-") for t in targets)


def test_pod_kill_recovers_and_the_plan_names_the_pods(kube_cluster: Any, k8s_namespace: str,
                                                       tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 4)
    before = uids(kube_cluster, k8s_namespace)
    text = experiment(k8s_namespace, """\
        - name: kill-two
          podKill: {selector: {owner: {kind: Deployment, name: web}, mode: {fixed: 2}}, gracePeriod: 0s}
          at: 500ms
        """, recovery="6s", slos="- {name: back, probe: available, consecutiveFailures: '< 100'}")
    plan, _ = chaos(kube_cluster, tmp_path, text, command="plan")
    assert plan.returncode == 0, plan.stderr
    planned = [line.split("will touch: ")[1] for line in plan.stdout.splitlines()
               if "will touch:" in line]
    assert len(planned) == 2 and all("(Deployment/web, node " in p for p in planned)
    assert uids(kube_cluster, k8s_namespace) == before, "plan touches nothing"

    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    killed = [name for name in before if pod_uid(kube_cluster, k8s_namespace, name) is None]
    assert len(killed) == 2
    assert sorted(journal["faults"][0]["targets"]) == sorted(planned), "the plan was exact"
    after = uids(kube_cluster, k8s_namespace)
    assert len(after) == 4 and set(after) != set(before)
    samples = journal["probes"]["available"]
    assert samples[-1]["ok"], "the Deployment is back to 4 available"


def test_aggressive_kill_breaches_the_availability_slo_and_aborts(
        kube_cluster: Any, k8s_namespace: str, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 3)
    text = experiment(k8s_namespace, """\
        - name: kill-all-repeatedly
          podKill: {selector: {labels: {app: web}, mode: all}, gracePeriod: 0s, every: 300ms}
          at: 200ms
          duration: 20s
        """, slos="- {name: all-up, probe: available, successRate: '>= 100%', window: 2s}",
                      probe_interval="100ms")
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 3, result.stdout + result.stderr
    assert journal["abort"]["slo"] == "all-up"
    fault = journal["faults"][0]
    assert fault["reverted_at"], "the repeat loop was stopped"
    assert journal["duration"] < 15, "aborted long before the 20s fault would have ended"


def test_a_pod_disruption_budget_blocks_eviction(kube_cluster: Any, k8s_namespace: str,
                                                 tmp_path: Path) -> None:
    from kubernetes import client

    deploy(kube_cluster, k8s_namespace, 3)
    with kube_cluster.api_client() as api:
        client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(k8s_namespace, {
            "metadata": {"name": "web-pdb"},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}})
    before = uids(kube_cluster, k8s_namespace)
    text = experiment(k8s_namespace, """\
        - name: evict-one
          podKill: {selector: {labels: {app: web}}, useEviction: true}
          at: 200ms
        """)

    async def pdb_ready() -> bool:
        with kube_cluster.api_client() as api:
            pdb = client.PolicyV1Api(api).read_namespaced_pod_disruption_budget(
                "web-pdb", k8s_namespace)
        return pdb.status is not None and pdb.status.observed_generation is not None

    run(wait_until("the PDB to be observed", pdb_ready))
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 1, result.stdout + result.stderr
    error = journal["faults"][0]["inject_error"]
    assert "PodDisruptionBudget" in error
    assert uids(kube_cluster, k8s_namespace) == before, "nothing was evicted"


def test_least_privilege_is_refused_at_preflight_and_the_documented_rules_suffice(
        kube_cluster: Any, k8s_namespace: str, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 2)
    text = experiment(k8s_namespace, """\
        - name: kill
          podKill: {selector: {labels: {app: web}}}
          at: 200ms
        """)
    too_few = service_account_kubeconfig(
        kube_cluster, k8s_namespace, "chaos-weak",
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
         {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
        tmp_path / "weak.kubeconfig")
    before = uids(kube_cluster, k8s_namespace)
    result, journal = chaos(kube_cluster, tmp_path, text, kubeconfig=str(too_few))
    assert result.returncode == 2, result.stdout + result.stderr
    message = "\n".join(journal["errors"])
    assert "delete pods in namespace" in message
    assert "create leases (API group coordination.k8s.io)" in message
    assert 'resources: ["pods"]\n  verbs: ["delete"]' in message  # a rule to paste
    assert "patch" not in message, "a pod kill annotates nothing, so it needs no patch"
    assert uids(kube_cluster, k8s_namespace) == before, "nothing was touched"

    exact = service_account_kubeconfig(
        kube_cluster, k8s_namespace, "chaos-exact",
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
         {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
         {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
          "verbs": ["get", "create", "update", "delete"]},
         {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}],
        tmp_path / "exact.kubeconfig")
    result, journal = chaos(kube_cluster, tmp_path, text, kubeconfig=str(exact))
    assert result.returncode == 0, result.stdout + result.stderr
    assert journal["faults"][0]["injected_at"]


def test_a_held_lease_keeps_a_second_run_out(kube_cluster: Any, k8s_namespace: str,
                                             tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 2)

    async def hold() -> None:
        kc = await KubeClient.connect(kube_cluster.kubeconfig)
        try:
            await kc.acquire_lease(k8s_namespace, "chaos-runner", "another-run", 120)
        finally:
            await kc.close()

    run(hold())
    text = experiment(k8s_namespace, """\
        - name: kill
          podKill: {selector: {labels: {app: web}}}
        """)
    before = uids(kube_cluster, k8s_namespace)
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "another-run" in "\n".join(journal["errors"])
    assert uids(kube_cluster, k8s_namespace) == before


def test_protected_namespace_is_refused_without_opt_in(tmp_path: Path) -> None:
    text = experiment("kube-system", """\
        - name: kill
          podKill: {selector: {labels: {k8s-app: kube-dns}}}
        """)
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    result = subprocess.run([sys.executable, "-m", "chaos", "validate", str(exp)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "protected namespace 'kube-system'" in result.stderr
    assert "allowProtectedNamespaces" in result.stderr


def test_a_kill_names_its_pods_in_one_event_per_workload(kube_cluster: Any, k8s_namespace: str,
                                                        tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 12)
    before = uids(kube_cluster, k8s_namespace)
    text = experiment(k8s_namespace, """\
        - name: kill-all
          podKill: {selector: {labels: {app: web}, mode: all}, gracePeriod: 0s}
          at: 200ms
        """, recovery="2s", limits="{maxDuration: 2m, maxPods: 12}")
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(pod_uid(kube_cluster, k8s_namespace, name) is None for name in before)
    events = json.loads(kube_cluster.kubectl(
        "get", "events.events.k8s.io", "-n", k8s_namespace, "-o", "json").stdout)["items"]
    injected = [e for e in events if e.get("reportingController") == "chaos-runner"
                and e["reason"] == "ChaosFaultInjected"]
    assert len(injected) == 1, [e["note"] for e in injected]
    note = injected[0]["note"]
    assert injected[0]["regarding"]["kind"] == "Deployment"
    assert journal["run_id"] in note and "deleted 12 pod(s)" in note
    assert all(name in note for name in before)


def test_helper_faults_emit_events_on_the_workload(kube_cluster: Any, k8s_namespace: str,
                                                   kubelet_sim: Any, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 2)
    text = experiment(k8s_namespace, f"""\
        - name: burn
          cpuStress: {{selector: {{labels: {{app: web}}}}, workers: 1, load: 20%, image: {IMAGE}}}
          at: 200ms
          duration: 2s
        """)
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    # read as JSON: the typed client cannot parse controllers' Events (no eventTime)
    events = json.loads(kube_cluster.kubectl(
        "get", "events.events.k8s.io", "-n", k8s_namespace, "-o", "json").stdout)["items"]
    ours = [e for e in events if e.get("reportingController") == "chaos-runner"]
    reasons = {(e["regarding"]["kind"], e["reason"]) for e in ours}
    assert ("Deployment", "ChaosFaultInjected") in reasons
    assert ("Deployment", "ChaosFaultReverted") in reasons
    # The helper container's name carries the run id: `kubectl describe pod` shows who did it.
    injected = next(e for e in ours if e["reason"] == "ChaosFaultInjected")
    assert f"chaos-{journal['run_id'][:8]}-burn" in injected["note"]


def _wait_injected(journal: Path, timeout: float = 60) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = json.loads(journal.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        if data.get("faults") and all(f.get("injected_at") for f in data["faults"]):
            return data
        time.sleep(0.1)
    raise AssertionError("the faults were never injected")


def test_sigkilled_run_is_repaired_by_recover(kube_cluster: Any, k8s_namespace: str,
                                              kubelet_sim: Any, tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 2)
    text = experiment(k8s_namespace, f"""\
        - name: burn
          cpuStress: {{selector: {{labels: {{app: web}}, mode: all}}, workers: 1, load: 20%,
                      image: {IMAGE}}}
          at: 200ms
          duration: 60s
        """, limits="{maxDuration: 5m}")
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    state, journal = tmp_path / "state", tmp_path / "run.json"
    runner = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", str(exp), "--kubeconfig", kube_cluster.kubeconfig,
         "--state-dir", str(state), "--journal", str(journal)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        data = _wait_injected(journal)
    finally:
        runner.kill()
        runner.wait()
    run_id = data["run_id"][:8]
    dry = subprocess.run([sys.executable, "-m", "chaos", "recover", "--dry-run", "--state-dir",
                          str(state)], capture_output=True, text=True, timeout=60)
    assert "burn [cpuStress] applied" in dry.stdout
    # The manual steps name the exact helper of this fault on each pod.
    assert f"pkill -TERM -f 'chaos-fault[-]chaos-{run_id}-burn$'" in dry.stdout
    assert dry.stdout.count("kubectl -n ") == 2
    rec = subprocess.run([sys.executable, "-m", "chaos", "recover", "--state-dir", str(state),
                          "--kubeconfig", kube_cluster.kubeconfig, "--helper-image", IMAGE],
                         capture_output=True, text=True, timeout=120)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "added the undo container to 2 pod(s)" in rec.stdout
    for pod in set(uids(kube_cluster, k8s_namespace)):
        helper = kubelet_sim.wait_for(f"chaos-{run_id}-burn", pod=pod, timeout=60)
        assert helper.exit_code == 0, "the undo stopped the helper; it ended its fault"
    again = subprocess.run([sys.executable, "-m", "chaos", "recover", "--state-dir", str(state)],
                           capture_output=True, text=True, timeout=60)
    assert "nothing to recover" in again.stdout
    # the lease of the killed run expires by itself; a new run is refused only until then
    assert "Lease" not in again.stdout


def test_a_flaky_api_server_does_not_stop_reverts(kube_cluster: Any, k8s_namespace: str,
                                                   kubelet_sim: Any, tmp_path: Path) -> None:
    from helpers_faults import netem_as_scripted
    from test_kube_api_faults import DROP, DROP_AFTER, ERROR_500, FaultyProxy, Upstream

    kubelet_sim.policy(netem_as_scripted(2.0, delay="80ms"))
    deploy(kube_cluster, k8s_namespace, 2)
    proxy = FaultyProxy(Upstream.from_kubeconfig(kube_cluster.kubeconfig), tmp_path).start()
    try:
        proxy.fraction, proxy.kinds = 0.15, (ERROR_500, DROP, DROP_AFTER)
        text = experiment(k8s_namespace, f"""\
            - name: slow
              networkLatency: {{selector: {{labels: {{app: web}}, mode: all}}, delay: 80ms,
                               image: {IMAGE}}}
              at: 300ms
              duration: 2s
            - name: burn
              cpuStress: {{selector: {{labels: {{app: web}}, mode: all}}, workers: 1,
                          image: {IMAGE}}}
              at: 400ms
              duration: 2s
            """)
        result, journal = chaos(kube_cluster, tmp_path, text,
                                kubeconfig=str(proxy.kubeconfig()))
        faults_seen = dict(proxy.faults)
    finally:
        proxy.stop()
    assert sum(faults_seen.values()) >= 3, faults_seen
    assert result.returncode == 0, result.stdout + result.stderr
    for fault in journal["faults"]:
        assert fault["verified_at"] and fault["reverted_at"] and not fault["revert_error"], fault

    async def containers() -> list[str]:
        kc = await KubeClient.connect(kube_cluster.kubeconfig)
        try:
            pods = await kc.list_pods(k8s_namespace, labels={"app": "web"})
            return [c["name"] for p in pods for c in await kc.ephemeral_containers(p)]
        finally:
            await kc.close()

    names = run(containers())
    run_id = journal["run_id"][:8]
    for fault in ("slow", "burn"):
        assert names.count(f"chaos-{run_id}-{fault}") == 2
        assert names.count(f"chaos-{run_id}-{fault}-undo") == 2


def test_probe_kinds_and_the_scale_rollback(kube_cluster: Any, k8s_namespace: str,
                                            tmp_path: Path) -> None:
    from test_kube_client import create_statefulset

    deploy(kube_cluster, k8s_namespace, 2)
    create_statefulset(kube_cluster, k8s_namespace, "db", 1)
    ns = k8s_namespace
    text = "\n".join([
        "apiVersion: chaos/v1",
        "kind: Experiment",
        "metadata: {name: probes}",
        "spec:",
        f"  target: {{platform: kubernetes, namespace: {ns}}}",
        "  baseline: 1s",
        "  recovery: 2s",
        "  probes:",
        '    - {name: web, interval: 250ms, kubernetes: {deployment: {name: web, available: ">= 2"}}}',
        '    - {name: db, interval: 250ms, kubernetes: {statefulset: {name: db}}}',
        '    - {name: ready, interval: 250ms, kubernetes: {pods: {selector: {app: web}, ready: ">= 2"}}}',
        "    - {name: calm, interval: 250ms, kubernetes: {restarts: {selector: {app: web}, max: 0}}}",
        "    - name: progressing",
        "      interval: 250ms",
        "      kubernetes: {resource: {apiVersion: apps/v1, kind: Deployment, name: web,",
        "                              condition: {type: Available, status: 'True'}}}",
        "  slos:",
        *[f"    - {{name: {p}, probe: {p}, successRate: '>= 100%', window: 5s, minSamples: 2}}"
          for p in ("web", "db", "ready", "calm", "progressing")],
        "  rollbacks:",
        "    - name: scale-web",
        "      kubernetes: {scale: {name: web, replicas: 3}}",
        "",
    ])
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(s["verdict"] == "passed" for s in journal["slos"]), journal["slos"]
    assert journal["rollbacks"][0]["ok"], journal["rollbacks"]
    details = {name: samples[-1]["detail"] for name, samples in journal["probes"].items()}
    assert details["web"].startswith("2/2 available")
    assert details["db"].startswith("1/1 available")
    assert details["calm"].startswith("0 restart(s) across 2 pod(s)")
    assert "Available=True" in details["progressing"]

    async def replicas() -> int:
        kc = await KubeClient.connect(kube_cluster.kubeconfig)
        try:
            return (await kc.get_deployment(ns, "web")).replicas
        finally:
            await kc.close()

    assert run(replicas()) == 3


@pytest.mark.parametrize("example", ["pod-kill.yaml", "network-latency.yaml", "cpu-stress.yaml"])
def test_example_experiments_run_against_the_test_cluster(kube_cluster: Any, k8s_namespace: str,
                                                          kubelet_sim: Any, example: str,
                                                          tmp_path: Path) -> None:
    from helpers_faults import netem_as_scripted

    kubelet_sim.policy(netem_as_scripted(2.0, delay="200ms"))
    manifest = REPO / "experiments" / "kubernetes" / "demo-app.yaml"
    kube_cluster.kubectl("-n", k8s_namespace, "apply", "-f", str(manifest))

    async def ready() -> None:
        kc = await KubeClient.connect(kube_cluster.kubeconfig)
        try:
            await ready_deployment(kc, k8s_namespace, "checkout", 3)
        finally:
            await kc.close()

    run(ready())
    # The examples run 30s faults; shorten them for the test, keep everything else.
    text = (REPO / "experiments" / "kubernetes" / example).read_text()
    text = text.replace("duration: 30s", "duration: 2s").replace("recovery: 20s", "recovery: 4s")
    exp = tmp_path / example
    exp.write_text(text)
    env = {**__import__("os").environ, "CHAOS_NAMESPACE": k8s_namespace,
           "CHAOS_HELPER_IMAGE": IMAGE}
    base = [sys.executable, "-m", "chaos"]
    plan = subprocess.run([*base, "plan", str(exp), "--kubeconfig", kube_cluster.kubeconfig],
                          capture_output=True, text=True, timeout=120, env=env)
    assert plan.returncode == 0, plan.stderr
    assert f"will touch: pod {k8s_namespace}/checkout-" in plan.stdout
    journal = tmp_path / "run.json"
    result = subprocess.run(
        [*base, "run", str(exp), "--kubeconfig", kube_cluster.kubeconfig, "--journal",
         str(journal), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(journal.read_text())
    assert data["status"] == "passed"
    assert all(f["injected_at"] and f["verified_at"] for f in data["faults"])


def test_blast_radius_caps_refuse_before_anything(kube_cluster: Any, k8s_namespace: str,
                                                  tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 4)
    before = uids(kube_cluster, k8s_namespace)
    kill_all = """\
        - name: kill
          podKill: {selector: {labels: {app: web}, mode: all}}
        """
    result, journal = chaos(kube_cluster, tmp_path, experiment(
        k8s_namespace, kill_all, limits="{maxDuration: 2m, maxPods: 3}"))
    assert result.returncode == 2
    assert "would hit 4 pods (all of 4), more than limits.maxPods=3" in journal["errors"][0]
    result, journal = chaos(kube_cluster, tmp_path, experiment(
        k8s_namespace, kill_all.replace("mode: all", "mode: {percent: 50%}"),
        limits="{maxDuration: 2m, maxPercent: 30%}"))
    assert result.returncode == 2
    assert "(50%), more than limits.maxPercent=30%" in journal["errors"][0]
    assert uids(kube_cluster, k8s_namespace) == before


def test_an_aborted_run_says_so_in_an_event(kube_cluster: Any, k8s_namespace: str,
                                            tmp_path: Path) -> None:
    deploy(kube_cluster, k8s_namespace, 2)
    text = experiment(k8s_namespace, """\
        - name: kill-all
          podKill: {selector: {labels: {app: web}, mode: all}, gracePeriod: 0s, every: 300ms}
          at: 200ms
          duration: 20s
        """, slos="- {name: all-up, probe: available, successRate: '>= 100%', window: 2s}",
                      probe_interval="100ms")
    result, journal = chaos(kube_cluster, tmp_path, text)
    assert result.returncode == 3, result.stdout + result.stderr
    events = json.loads(kube_cluster.kubectl(
        "get", "events.events.k8s.io", "-n", k8s_namespace, "-o", "json").stdout)["items"]
    aborted = [e for e in events if e["reason"] == "ChaosExperimentAborted"]
    assert aborted and aborted[0]["regarding"]["kind"] == "Deployment"
    assert aborted[0]["type"] == "Warning" and journal["run_id"] in aborted[0]["note"]


def test_in_cluster_service_account(kube_cluster: Any, k8s_namespace: str,
                                    tmp_path: Path) -> None:
    """As in a CronJob pod: no kubeconfig, the token and CA at the in-cluster paths. The CLI
    runs in a private mount namespace with a tmpfs over /run, so the host is not touched."""
    import shutil
    from urllib.parse import urlparse

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to fake the in-cluster paths")
    deploy(kube_cluster, k8s_namespace, 2)
    sa_config = json.loads(service_account_kubeconfig(
        kube_cluster, k8s_namespace, "chaos-incluster",
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete", "patch"]},
         {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
         {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
          "verbs": ["get", "create", "update", "delete"]},
         {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]}],
        tmp_path / "sa.kubeconfig").read_text())
    token = sa_config["users"][0]["user"]["token"]
    server = urlparse(sa_config["clusters"][0]["cluster"]["server"])
    ca = sa_config["clusters"][0]["cluster"]["certificate-authority"]
    secrets = tmp_path / "sa"
    secrets.mkdir()
    (secrets / "token").write_text(token)
    (secrets / "ca.crt").write_text(Path(ca).read_text())
    (secrets / "namespace").write_text(k8s_namespace)
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment(k8s_namespace, """\
        - name: kill
          podKill: {selector: {labels: {app: web}}, gracePeriod: 0s}
          at: 200ms
        """))
    journal = tmp_path / "run.json"
    inner = (
        "set -e; mount -t tmpfs tmpfs /run; "
        "mkdir -p /run/secrets/kubernetes.io/serviceaccount; "
        f"cp {secrets}/* /run/secrets/kubernetes.io/serviceaccount/; "
        f'exec "$@"'
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
           "KUBERNETES_SERVICE_PORT": str(server.port)}
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner, "sh",
         sys.executable, "-m", "chaos", "run", str(exp), "--journal", str(journal),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(journal.read_text())
    assert data["faults"][0]["injected_at"]
    assert not Path("/run/secrets/kubernetes.io/serviceaccount/token").exists(), "host untouched"
