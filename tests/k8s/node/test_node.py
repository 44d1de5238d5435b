"""The real node itself: what it is built from, that pods on it reach the API server through
the `kubernetes` Service with their ServiceAccount token, that kwok leaves it alone, and that
stopping it leaves nothing on the host."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import realnode
from realnode_kit import REPO, apply, pods, wait

pytestmark = [pytest.mark.k8s, pytest.mark.realnode]


def _modver(path: Path) -> str:
    m = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", path.read_text(), re.M)
    assert m, path
    return m.group(1)


def test_node_is_built_from_the_control_planes_kubernetes(kube_cluster: Any,
                                                         real_node: realnode.RealNode) -> None:
    cluster = REPO / "tests" / "cluster"
    assert _modver(cluster / "node" / "go.mod") == _modver(cluster / "k8s" / "go.mod")
    node = json.loads(kube_cluster.kubectl("get", "node", real_node.name, "-o", "json").stdout)
    server = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == server["gitVersion"] == _modver(cluster / "k8s" / "go.mod")
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    assert node["metadata"]["labels"][realnode.NODE_LABEL] == "true"
    assert {"key": realnode.TAINT_KEY, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]
    # kwok manages only its annotated fake nodes, never this one.
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    fake = json.loads(kube_cluster.kubectl("get", "nodes", "-l", "type=kwok", "-o", "json").stdout)
    assert fake["items"], "kwok's fake nodes are gone"
    for n in fake["items"]:
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    """In-cluster configuration, as the runner uses it in a CronJob: the Service IP from the
    environment, the ServiceAccount token and CA from the projected volume, TLS verified."""
    ns = k8s_namespace
    kube_cluster.kubectl("create", "rolebinding", "view", "-n", ns, "--clusterrole=view",
                         f"--serviceaccount={ns}:default")
    script = (
        "from kubernetes import client, config\n"
        "config.load_incluster_config()\n"
        "c = client.Configuration.get_default_copy()\n"
        "pods = client.CoreV1Api().list_namespaced_pod(open('/var/run/secrets/kubernetes.io/"
        "serviceaccount/namespace').read())\n"
        "print('HOST', c.host)\n"
        "print('PODS', sorted(p.metadata.name for p in pods.items))\n"
    )
    apply(kube_cluster, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "incluster", "namespace": ns, "labels": {"app": "incluster"}},
        "spec": {**realnode.REAL_NODE_SCHEDULING, "restartPolicy": "Never",
                 "containers": [{"name": "c", "image": realnode.IMAGES["runner"],
                                 "imagePullPolicy": "Never", "command": ["python3", "-c", script]}]},
    }, tmp_path)

    def done() -> dict[str, Any] | None:
        p = pods(kube_cluster, ns, "app=incluster")
        phase = p[0]["status"].get("phase") if p else None
        return p[0] if phase in ("Succeeded", "Failed") else None

    pod = wait("the in-cluster pod to finish", done, 120)
    logs = kube_cluster.kubectl("logs", "-n", ns, "incluster").stdout
    assert pod["status"]["phase"] == "Succeeded", logs
    assert f"HOST https://{realnode.SERVICE_IP}:443" in logs
    assert "PODS ['incluster']" in logs


def test_stopping_the_node_leaves_nothing_and_it_starts_again(
        kube_cluster: Any, real_node_session: Any, k8s_namespace: str, tmp_path: Path) -> None:
    """Teardown with a pod running: no process, mount, link, nftables table, cgroup, CNI file
    or changed sysctl is left; then a warm start (images already in containerd's store is not
    assumed: the node's folder is new)."""
    ns = k8s_namespace
    apply(kube_cluster, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": ns},
        "spec": {**realnode.REAL_NODE_SCHEDULING,
                 "containers": [{"name": "c", "image": realnode.IMAGES["pause"], "imagePullPolicy": "Never"}]},
    }, tmp_path)
    wait("pod sleeper Running", lambda: (p := json.loads(kube_cluster.kubectl(
        "get", "pod", "sleeper", "-n", ns, "-o", "json").stdout))["status"].get("phase") == "Running" and p, 60)
    during = realnode.host_state()
    assert bridge_up(during), "the pod's network should be up while it runs"
    t0 = time.monotonic()
    old = real_node_session.node
    problems = real_node_session.stop_and_check()
    stop_s = time.monotonic() - t0
    print(f"real node stop: {old.timings}")
    assert problems == [], problems
    node = real_node_session.start()
    print(f"real node: stopped in {stop_s:.1f}s, warm start in {node.timings['start_total']:.1f}s")
    assert node.timings["start_total"] < 60


def bridge_up(state: realnode.HostState) -> bool:
    return realnode.BRIDGE in state.links and any(t.endswith("kube-proxy") for t in state.nft_tables)
