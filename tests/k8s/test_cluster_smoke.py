"""Smoke tests of the test control plane (tests/k8s/conftest.py, docs/test-cluster.md): pods get
scheduled onto kwok's fake nodes and turn Ready, controllers replace deleted pods, and RBAC is
enforced for a least-privilege ServiceAccount."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.k8s

WAIT_S = 90


def _deployment(
    name: str, replicas: int, node_selector: dict[str, str], tolerations: list[Any]
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": node_selector,
                    "tolerations": tolerations,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": "registry.invalid/fake:1"}],
                },
            },
        },
    }


def _ready_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]


def _available(apps: client.AppsV1Api, namespace: str, name: str, want: int) -> bool:
    st = apps.read_namespaced_deployment_status(name, namespace).status
    return (
        (st.available_replicas or 0) == want
        and (st.ready_replicas or 0) == want
        and (st.replicas or 0) == want
        and (st.updated_replicas or 0) == want
    )


def test_server_version_is_what_we_built(kube_cluster: Any) -> None:
    with kube_cluster.api_client() as api:
        info = client.VersionApi(api).get_code()
    assert info.git_version == kube_cluster.kube_version
    assert (info.major, info.minor) == tuple(kube_cluster.kube_version[1:].split(".")[:2])


def test_fake_nodes_are_ready(kube_cluster: Any) -> None:
    with kube_cluster.api_client() as api:
        nodes = client.CoreV1Api(api).list_node(label_selector="type=kwok").items
    assert len(nodes) >= 3
    for node in nodes:
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def test_deployment_pods_become_ready_and_are_replaced(
    kube_cluster: Any, k8s_namespace: str
) -> None:
    ns, name, selector = k8s_namespace, "web", "app=web"
    with kube_cluster.api_client() as api:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        apps.create_namespaced_deployment(
            ns, _deployment(name, 3, kube_cluster.node_selector, kube_cluster.tolerations)
        )

        pods = kube_cluster.wait_for(
            "3 Ready pods of Deployment web",
            lambda: (p := _ready_pods(core, ns, selector)) and len(p) == 3 and p,
            timeout=WAIT_S,
        )
        kube_cluster.wait_for(
            "Deployment web to report 3 available replicas",
            lambda: _available(apps, ns, name, 3),
            timeout=WAIT_S,
        )
        fake_nodes = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
        assert {p.spec.node_name for p in pods} <= fake_nodes, "pods must run on kwok fake nodes"

        before = {p.metadata.name for p in pods}
        victim = sorted(before)[0]
        core.delete_namespaced_pod(victim, ns, grace_period_seconds=0)

        def replaced() -> bool:
            names = {p.metadata.name for p in _ready_pods(core, ns, selector)}
            return len(names) == 3 and victim not in names and bool(names - before)

        kube_cluster.wait_for(
            f"a Ready replacement for deleted pod {victim}", replaced, timeout=WAIT_S
        )
        kube_cluster.wait_for(
            "Deployment web to return to 3 available replicas",
            lambda: _available(apps, ns, name, 3),
            timeout=WAIT_S,
        )


def test_least_privilege_service_account_cannot_delete_pods(
    kube_cluster: Any, k8s_namespace: str
) -> None:
    ns, sa = k8s_namespace, "pod-reader"
    with kube_cluster.api_client() as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
        rbac.create_namespaced_role(
            ns,
            {
                "metadata": {"name": sa},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": sa},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
            },
        )
        core.create_namespaced_pod(
            ns,
            {
                "metadata": {"name": "victim", "labels": {"app": "victim"}},
                "spec": {
                    "nodeSelector": kube_cluster.node_selector,
                    "tolerations": kube_cluster.tolerations,
                    "containers": [{"name": "app", "image": "registry.invalid/fake:1"}],
                },
            },
        )
        token = core.create_namespaced_service_account_token(
            sa,
            ns,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            },
        ).status.token
        assert token

        with kube_cluster.api_client_for_token(token) as sa_api:
            sa_core = client.CoreV1Api(sa_api)
            # The RoleBinding reaches the RBAC authorizer's cache asynchronously.
            kube_cluster.wait_for(
                "the ServiceAccount to be allowed to list pods",
                lambda: sa_core.list_namespaced_pod(ns).items is not None,
                timeout=30,
            )
            assert sa_core.read_namespaced_pod("victim", ns).metadata.name == "victim"

            with pytest.raises(ApiException) as denied:
                sa_core.delete_namespaced_pod("victim", ns)
            assert denied.value.status == 403, denied.value
            assert "forbidden" in (denied.value.body or "").lower()

            # Outside its namespace it may not even list.
            with pytest.raises(ApiException) as denied_ns:
                sa_core.list_namespaced_pod("kube-system")
            assert denied_ns.value.status == 403

        # The pod is still there: the denial happened before anything was touched.
        assert core.read_namespaced_pod("victim", ns).metadata.deletion_timestamp is None
