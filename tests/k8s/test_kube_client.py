"""The Kubernetes access layer (chaos/platform/kubernetes) against the real test control plane:
pods listed by labels, fields and owner; uid-pinned deletes; evictions and PodDisruptionBudgets;
RBAC denials with the rule that would grant them; preflight access review; leases between runs;
Events; annotations; ephemeral containers. A few pure tests of error mapping and retries run
without the cluster."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

import chaos.platform.kubernetes as kube
from chaos.errors import InvalidInput, PermissionDenied, TransientError
from chaos.platform.kubernetes import (
    AccessCheck,
    Conflict,
    DisruptionBudgetBlocked,
    Forbidden,
    Invalid,
    KubeClient,
    LeaseHeld,
    NotFound,
    PodRef,
    RetryPolicy,
    TooManyRequests,
    Unavailable,
    rules_yaml,
)
from chaos.platform.kubernetes.errors import HttpFailure, from_http
from chaos.platform.kubernetes.retry import call_with_retries

k8s = pytest.mark.k8s
T = TypeVar("T")
WAIT_S = 90
FAKE_IMAGE = "registry.invalid/fake:1"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def wait_until(what: str, probe: Callable[[], Awaitable[T]], timeout: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.3)


# ------------------------------------------------------------------------------------------------
# Test objects, created as admin with the official client (independent of the code under test)
# ------------------------------------------------------------------------------------------------


def pod_template(cluster: Any, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "nodeSelector": cluster.node_selector,
            "tolerations": cluster.tolerations,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": FAKE_IMAGE}],
        },
    }


def create_deployment(cluster: Any, ns: str, name: str, replicas: int) -> None:
    from kubernetes import client

    labels = {"app": name}
    with cluster.api_client() as api:
        client.AppsV1Api(api).create_namespaced_deployment(
            ns,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": pod_template(cluster, labels),
                },
            },
        )


def create_statefulset(cluster: Any, ns: str, name: str, replicas: int) -> None:
    from kubernetes import client

    labels = {"app": name}
    with cluster.api_client() as api:
        client.AppsV1Api(api).create_namespaced_stateful_set(
            ns,
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas,
                    "serviceName": name,
                    "selector": {"matchLabels": labels},
                    "template": pod_template(cluster, labels),
                },
            },
        )


def create_pod(cluster: Any, ns: str, name: str, labels: dict[str, str] | None = None) -> str:
    from kubernetes import client

    body = pod_template(cluster, labels or {"app": name})
    body["metadata"]["name"] = name
    with cluster.api_client() as api:
        return str(client.CoreV1Api(api).create_namespaced_pod(ns, body).metadata.uid)


def pod_uid(cluster: Any, ns: str, name: str) -> str | None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    with cluster.api_client() as api:
        try:
            return str(client.CoreV1Api(api).read_namespaced_pod(name, ns).metadata.uid)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


async def ready_deployment(kc: KubeClient, ns: str, name: str, replicas: int) -> list[PodRef]:
    async def settled() -> bool:
        status = await kc.get_deployment(ns, name)
        return status.settled and status.replicas == replicas

    await wait_until(f"Deployment {name} to be available", settled)
    return await wait_until(
        f"{replicas} ready pods of Deployment {name}",
        lambda: _ready_pods(kc, ns, ("Deployment", name), replicas),
    )


async def _ready_pods(
    kc: KubeClient, ns: str, owner: tuple[str, str], want: int
) -> list[PodRef] | None:
    pods = [p for p in await kc.list_pods(ns, owner=owner) if p.ready and not p.terminating]
    return pods if len(pods) == want else None


def service_account_kubeconfig(
    cluster: Any, ns: str, sa: str, rules: list[dict[str, Any]], out: Path
) -> Path:
    """A kubeconfig that authenticates as ServiceAccount ``ns/sa`` (a TokenRequest token)
    granted exactly ``rules`` in ``ns``."""
    from kubernetes import client

    with cluster.api_client() as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
        rbac.create_namespaced_role(ns, {"metadata": {"name": sa}, "rules": rules})
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": sa},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
            },
        )
    return cluster.token_kubeconfig(ns, sa, out)


# ------------------------------------------------------------------------------------------------
# Without the cluster: the public surface, lazy import, error mapping, the retry loop
# ------------------------------------------------------------------------------------------------


def test_all_lists_every_public_name() -> None:
    public = {n for n in dir(kube) if not n.startswith("_")}
    modules = {"access", "client", "errors", "models", "retry"}
    assert set(kube.__all__) == public - modules


def test_importing_the_package_does_not_import_the_kubernetes_client() -> None:
    code = (
        "import sys, chaos.platform.kubernetes\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'urllib3')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_403_names_the_attempt_and_the_rule_that_would_grant_it() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": 'pods "checkout-7d9c-x2" is forbidden: User "system:serviceaccount:shop:'
            'chaos" cannot create resource "pods/eviction" in API group "" in the namespace "shop"',
        }
    )
    err = from_http("evict pod", "shop/checkout-7d9c-x2", 403, "Forbidden", body, {})
    assert isinstance(err, Forbidden) and isinstance(err, PermissionDenied)
    assert str(err).startswith(
        'evict pod shop/checkout-7d9c-x2 failed: 403 Forbidden: pods "checkout-7d9c-x2" is '
        'forbidden: User "system:serviceaccount:shop:chaos" cannot create resource'
    )
    assert err.hint is not None
    assert 'resources: ["pods/eviction"]\n  verbs: ["create"]' in err.hint
    assert "a Role in namespace shop" in err.hint


def test_429s_pdb_is_final_apf_is_transient_with_retry_after() -> None:
    pdb = json.dumps(
        {
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "reason": "TooManyRequests",
            "details": {
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": "The disruption budget web-pdb needs 3 healthy pods and has "
                        "3 currently",
                    }
                ]
            },
        }
    )
    blocked = from_http("evict pod", "ns/p", 429, "Too Many Requests", pdb, {})
    assert isinstance(blocked, DisruptionBudgetBlocked)
    assert not isinstance(blocked, TransientError)
    assert blocked.budget == "web-pdb"
    assert "needs 3 healthy pods" in str(blocked)

    apf = from_http("list pods", "in ns", 429, "Too Many Requests", "", {"Retry-After": "2"})
    assert isinstance(apf, TooManyRequests) and isinstance(apf, TransientError)
    assert apf.retry_after == 2.0

    assert isinstance(from_http("get pod", "ns/p", 503, "Service Unavailable", "", {}), Unavailable)
    assert isinstance(from_http("get pod", "ns/p", 404, "Not Found", "", {}), NotFound)
    assert isinstance(from_http("get pod", "ns/p", 422, "Unprocessable Entity", "", {}), Invalid)


def test_access_check_rules() -> None:
    check = AccessCheck("create", "pods", "shop", subresource="eviction")
    assert check.rule() == '- apiGroups: [""]\n  resources: ["pods/eviction"]\n  verbs: ["create"]'
    assert check.describe() == "create pods/eviction in namespace shop"
    merged = rules_yaml(
        [
            AccessCheck("delete", "pods", "shop"),
            AccessCheck("list", "pods", "shop"),
            AccessCheck("patch", "deployments", "shop", group="apps"),
        ]
    )
    assert merged == (
        '- apiGroups: [""]\n  resources: ["pods"]\n  verbs: ["delete", "list"]\n'
        '- apiGroups: ["apps"]\n  resources: ["deployments"]\n  verbs: ["patch"]'
    )


def test_retry_loop_retries_transient_only_and_is_bounded() -> None:
    policy = RetryPolicy(attempts=4, initial_backoff=0.01, max_backoff=0.02, jitter=0.0)
    calls: list[int] = []

    def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 3:
            raise HttpFailure(503, "Service Unavailable", "", {})
        return "ok"

    assert run(call_with_retries(policy, "list pods", "in ns", flaky)) == "ok"
    assert calls == [1, 2, 3]

    def missing(attempt: int) -> None:
        calls.append(attempt)
        raise HttpFailure(404, "Not Found", "", {})

    calls.clear()
    with pytest.raises(NotFound):
        run(call_with_retries(policy, "get pod", "ns/p", missing))
    assert calls == [1]

    def down(attempt: int) -> None:
        calls.append(attempt)
        raise ConnectionRefusedError(111, "Connection refused")

    calls.clear()
    with pytest.raises(Unavailable) as exc:
        run(call_with_retries(policy, "get pod", "ns/p", down))
    assert calls == [1, 2, 3, 4]
    assert "get pod ns/p failed: no response from the API server" in str(exc.value)
    assert "gave up after 4 attempts" in str(exc.value)


def test_connect_says_what_it_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope.yaml"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InvalidInput) as exc:
        run(KubeClient.connect())
    message = str(exc.value)
    assert "no configuration found" in message
    assert f"$KUBECONFIG={tmp_path / 'nope.yaml'}" in message
    assert "~/.kube/config (no such file)" in message
    assert "in-cluster service account" in message

    with pytest.raises(InvalidInput, match="does not exist"):
        run(KubeClient.connect(str(tmp_path / "missing")))


# ------------------------------------------------------------------------------------------------
# Against the cluster
# ------------------------------------------------------------------------------------------------


@k8s
def test_connect_server_version_and_namespaces(
    kube_cluster: Any, k8s_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            assert await kc.server_version() == kube_cluster.kube_version
            assert await kc.namespace_exists(k8s_namespace)
            assert not await kc.namespace_exists("no-such-namespace")
        monkeypatch.setenv("KUBECONFIG", kube_cluster.kubeconfig)
        async with await KubeClient.connect() as kc:
            assert kc.source.startswith("$KUBECONFIG")
            assert await kc.server_version() == kube_cluster.kube_version
        with pytest.raises(InvalidInput, match="context nope"):
            await KubeClient.connect(kube_cluster.kubeconfig, context="nope")

    run(main())


@k8s
def test_list_pods_by_labels_fields_and_owner(kube_cluster: Any, k8s_namespace: str) -> None:
    ns = k8s_namespace
    create_deployment(kube_cluster, ns, "web", 3)
    create_statefulset(kube_cluster, ns, "db", 2)
    create_pod(kube_cluster, ns, "loner", {"app": "web"})  # matches the labels, has no owner

    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            web = await ready_deployment(kc, ns, "web", 3)
            assert [p.name for p in web] == sorted(p.name for p in web)
            assert {p.owner for p in web} == {"Deployment/web"}
            assert all(p.phase == "Running" and p.node and p.uid for p in web)
            assert web[0].describe() == (
                f"pod {ns}/{web[0].name} (Deployment/web, node {web[0].node})"
            )

            by_label = await kc.list_pods(ns, labels={"app": "web"})
            assert {p.name for p in by_label} == {p.name for p in web} | {"loner"}

            db = await wait_until(
                "2 ready pods of StatefulSet db",
                lambda: _ready_pods(kc, ns, ("StatefulSet", "db"), 2),
            )
            assert [p.name for p in db] == ["db-0", "db-1"]
            assert {p.owner for p in db} == {"StatefulSet/db"}

            (loner,) = await kc.list_pods(ns, field_selector="metadata.name=loner")
            assert loner.owner is None
            assert loner.describe().startswith(f"pod {ns}/loner (")

            node = web[0].node
            on_node = await kc.list_pods(ns, field_selector=f"spec.nodeName={node}")
            assert on_node and all(p.node == node for p in on_node)
            assert web[0].name in {p.name for p in on_node}

            assert await kc.list_pods(ns, labels={"app": "nothing"}) == []

    run(main())


@k8s
def test_delete_pod_is_idempotent_and_pinned_to_uid(kube_cluster: Any, k8s_namespace: str) -> None:
    ns = k8s_namespace
    create_pod(kube_cluster, ns, "victim")
    keeper_uid = create_pod(kube_cluster, ns, "keeper")

    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            victim = await kc.get_pod(ns, "victim")
            await kc.delete_pod(victim, grace_period=0)
            await kc.delete_pod(victim, grace_period=0)  # already gone: still a success
            await wait_until("victim to be gone", lambda: _gone(kube_cluster, ns, "victim"))

            keeper = await kc.get_pod(ns, "keeper")
            stale = PodRef(ns, "keeper", "00000000-0000-0000-0000-000000000000", None, None)
            with pytest.raises(Conflict) as exc:
                await kc.delete_pod(stale, grace_period=0)
            assert str(exc.value).startswith(f"delete pod {ns}/keeper failed: 409 Conflict:")
            assert "the UID in the precondition" in str(exc.value)
            assert "replaced by a new one" in (exc.value.hint or "")
            assert keeper.uid == keeper_uid == pod_uid(kube_cluster, ns, "keeper")

    run(main())


async def _gone(cluster: Any, ns: str, name: str) -> bool:
    return await asyncio.to_thread(pod_uid, cluster, ns, name) is None


@k8s
def test_eviction_respects_a_pod_disruption_budget(kube_cluster: Any, k8s_namespace: str) -> None:
    from kubernetes import client

    ns = k8s_namespace
    create_deployment(kube_cluster, ns, "web", 3)
    with kube_cluster.api_client() as api:
        client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
            ns,
            {
                "metadata": {"name": "web-pdb"},
                "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}},
            },
        )

    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            pods = await ready_deployment(kc, ns, "web", 3)

            async def pdb_observed() -> bool:
                pdb = await kc.get_resource("policy/v1", "PodDisruptionBudget", ns, "web-pdb")
                st = pdb.get("status", {})
                return st.get("observedGeneration") == 1 and st.get("currentHealthy") == 3

            await wait_until("the PDB controller to observe web-pdb", pdb_observed)

            t0 = time.monotonic()
            with pytest.raises(DisruptionBudgetBlocked) as exc:
                await kc.evict_pod(pods[0], grace_period=0)
            assert time.monotonic() - t0 < 5, "a PDB refusal must not be retried"
            assert exc.value.budget == "web-pdb"
            assert str(exc.value).startswith(f"evict pod {ns}/{pods[0].name} failed: 429")
            assert pod_uid(kube_cluster, ns, pods[0].name) == pods[0].uid

            await asyncio.to_thread(_delete_pdb, kube_cluster, ns, "web-pdb")
            await kc.evict_pod(pods[0], grace_period=0)
            await wait_until(
                f"evicted pod {pods[0].name} to be gone",
                lambda: _gone(kube_cluster, ns, pods[0].name),
            )
            await kc.evict_pod(pods[0], grace_period=0)  # gone: still a success

    run(main())


def _delete_pdb(cluster: Any, ns: str, name: str) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        client.PolicyV1Api(api).delete_namespaced_pod_disruption_budget(name, ns)


@k8s
def test_least_privilege_forbidden_and_access_review(
    kube_cluster: Any, k8s_namespace: str, tmp_path: Path
) -> None:
    ns, sa = k8s_namespace, "pod-reader"
    create_pod(kube_cluster, ns, "victim")
    kubeconfig = service_account_kubeconfig(
        kube_cluster,
        ns,
        sa,
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        tmp_path / "sa.kubeconfig",
    )

    async def main() -> None:
        async with await KubeClient.connect(str(kubeconfig)) as kc:
            # The RoleBinding reaches the authorizer's cache asynchronously.
            await wait_until("the ServiceAccount to list pods", lambda: kc.list_pods(ns))
            (victim,) = await kc.list_pods(ns)

            with pytest.raises(Forbidden) as exc:
                await kc.delete_pod(victim, grace_period=0)
            err = exc.value
            assert isinstance(err, PermissionDenied)
            assert str(err).startswith(
                f'delete pod {ns}/victim failed: 403 Forbidden: pods "victim" is forbidden: '
                f'User "system:serviceaccount:{ns}:{sa}" cannot delete resource "pods" in API '
                f'group "" in the namespace "{ns}"'
            )
            assert err.hint is not None
            assert '- apiGroups: [""]\n  resources: ["pods"]\n  verbs: ["delete"]' in err.hint

            checks = [
                AccessCheck("get", "pods", ns),
                AccessCheck("list", "pods", ns),
                AccessCheck("delete", "pods", ns),
                AccessCheck("create", "pods", ns, subresource="eviction"),
                AccessCheck("patch", "pods", ns, subresource="ephemeralcontainers"),
                AccessCheck("list", "pods", "kube-system"),
            ]
            denied = await kc.access_review(checks)
            assert [c.describe() for c in denied] == [
                f"delete pods in namespace {ns}",
                f"create pods/eviction in namespace {ns}",
                f"patch pods/ephemeralcontainers in namespace {ns}",
                "list pods in namespace kube-system",
            ]
            assert [c.allowed for c in checks[:2]] == [True, True]
            assert "RBAC" in checks[0].reason or checks[0].reason  # the server says why
            assert 'verbs: ["create"]' in denied[1].rule()

        assert pod_uid(kube_cluster, ns, "victim") == victim.uid

    run(main())


@k8s
def test_leases_keep_two_runs_apart(kube_cluster: Any, k8s_namespace: str) -> None:
    ns = k8s_namespace

    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            await kc.acquire_lease(ns, "target-web", "run-a", 30)
            with pytest.raises(LeaseHeld) as exc:
                await kc.acquire_lease(ns, "target-web", "run-b", 30)
            assert exc.value.holder == "run-a"
            assert exc.value.expires_at is not None
            left = exc.value.expires_at - datetime.now(UTC)
            assert timedelta(seconds=25) < left <= timedelta(seconds=30)
            assert f"acquire lease {ns}/target-web failed: held by run-a until" in str(exc.value)
            assert "kubectl delete lease" in (exc.value.hint or "")

            await kc.acquire_lease(ns, "target-web", "run-a", 30)  # ours: renewed
            await kc.renew_lease(ns, "target-web", "run-a")
            with pytest.raises(LeaseHeld):
                await kc.renew_lease(ns, "target-web", "run-b")
            await kc.release_lease(ns, "target-web", "run-b")  # not ours: left alone
            info = await kc.read_lease(ns, "target-web")
            assert info is not None and info.holder == "run-a" and info.transitions == 0
            await kc.release_lease(ns, "target-web", "run-a")
            assert await kc.read_lease(ns, "target-web") is None
            await kc.release_lease(ns, "target-web", "run-a")  # already gone: fine

            # A holder that stops renewing loses the lease once it expires.
            await kc.acquire_lease(ns, "target-db", "run-a", 1)
            with pytest.raises(LeaseHeld):
                await kc.acquire_lease(ns, "target-db", "run-b", 30)
            await asyncio.sleep(1.2)
            await kc.acquire_lease(ns, "target-db", "run-b", 30)
            info = await kc.read_lease(ns, "target-db")
            assert info is not None and info.holder == "run-b" and info.transitions == 1
            with pytest.raises(LeaseHeld):
                await kc.renew_lease(ns, "target-db", "run-a")
            await kc.release_lease(ns, "target-db", "run-a")
            assert (await kc.read_lease(ns, "target-db")) is not None

            with pytest.raises(NotFound):
                await kc.renew_lease(ns, "never-made", "run-a")

    run(main())


@k8s
def test_events_annotations_scale_and_any_resource(kube_cluster: Any, k8s_namespace: str) -> None:
    from kubernetes import client

    ns = k8s_namespace
    create_deployment(kube_cluster, ns, "web", 2)
    create_pod(kube_cluster, ns, "tagged")

    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            deployment = await kc.get_resource("apps/v1", "Deployment", ns, "web")
            uid = deployment["metadata"]["uid"]
            await kc.emit_event(
                namespace=ns,
                involved={"kind": "Deployment", "name": "web", "uid": uid},
                reason="ChaosFaultInjected",
                message="kill-a-pod: deleted pod web-x (run r-1)",
            )
            await kc.emit_event(
                namespace=ns,
                involved={"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                reason="ChaosAborted",
                message="x" * 5000,
                type_="Warning",
            )

            await kc.annotate("Pod", ns, "tagged", {"chaos.example/run": "r-1", "b": "2"})
            pod = await kc.get_resource("v1", "Pod", ns, "tagged")
            assert pod["metadata"]["annotations"] == {"chaos.example/run": "r-1", "b": "2"}
            await kc.annotate("Pod", ns, "tagged", {"chaos.example/run": None})
            pod = await kc.get_resource("v1", "Pod", ns, "tagged")
            assert pod["metadata"]["annotations"] == {"b": "2"}
            with pytest.raises(NotFound, match=f"annotate pod {ns}/nope failed: 404"):
                await kc.annotate("Pod", ns, "nope", {"a": "1"})

            await ready_deployment(kc, ns, "web", 2)
            await kc.scale(ns, "Deployment", "web", 3)
            await ready_deployment(kc, ns, "web", 3)
            status = await kc.get_deployment(ns, "web")
            assert (status.replicas, status.ready, status.available) == (3, 3, 3)
            with pytest.raises(NotFound, match=f"get statefulset {ns}/web failed: 404"):
                await kc.get_statefulset(ns, "web")

            # Any kind, by discovery; cluster-scoped kinds ignore the namespace.
            sa = await kc.get_resource("v1", "ServiceAccount", ns, "default")
            assert sa["kind"] == "ServiceAccount"
            (pod, *_) = await kc.list_pods(ns, owner=("Deployment", "web"))
            assert pod.node
            node = await kc.get_resource("v1", "Node", ns, pod.node)
            assert node["metadata"]["name"] == pod.node
            with pytest.raises(NotFound, match="does not serve it") as exc:
                await kc.get_resource("apps/v1", "Widget", ns, "x")
            assert "Deployment" in (exc.value.hint or "")
            with pytest.raises(NotFound, match=r"does not serve example\.com/v1"):
                await kc.get_resource("example.com/v1", "Widget", ns, "x")

    run(main())

    # Read back as admin, raw JSON: the typed client cannot parse controllers' core/v1 Events
    # (no eventTime) when listing them through events.k8s.io/v1.
    with kube_cluster.api_client() as api:
        raw = client.EventsV1Api(api).list_namespaced_event(ns, _preload_content=False)
        events = json.loads(raw.data)["items"]
        raw = client.CoreV1Api(api).list_namespaced_event(
            ns,
            field_selector="involvedObject.name=web,involvedObject.kind=Deployment",
            _preload_content=False,
        )
        core_events = json.loads(raw.data)["items"]
    ours = {e["reason"]: e for e in events if e.get("reportingController") == "chaos-runner"}
    assert set(ours) == {"ChaosFaultInjected", "ChaosAborted"}
    injected = ours["ChaosFaultInjected"]
    assert injected["note"] == "kill-a-pod: deleted pod web-x (run r-1)"
    assert injected["type"] == "Normal"
    regarding = injected["regarding"]
    assert (regarding["kind"], regarding["name"], regarding["apiVersion"]) == (
        "Deployment",
        "web",
        "apps/v1",
    )
    assert ours["ChaosAborted"]["type"] == "Warning"
    assert len(ours["ChaosAborted"]["note"]) == 1024
    # The same Events through core/v1, as `kubectl describe deployment web` shows them.
    assert {e["reason"] for e in core_events} >= {"ChaosFaultInjected", "ChaosAborted"}


@k8s
def test_ephemeral_containers(kube_cluster: Any, k8s_namespace: str) -> None:
    from kubernetes import client

    ns = k8s_namespace
    create_pod(kube_cluster, ns, "target")
    debug = {"name": "chaos-net", "image": "busybox", "command": ["sleep", "3600"]}

    async def main() -> None:
        async with await KubeClient.connect(kube_cluster.kubeconfig) as kc:
            pod = await kc.get_pod(ns, "target")
            assert await kc.ephemeral_containers(pod) == []
            await kc.add_ephemeral_container(pod, debug)
            await kc.add_ephemeral_container(pod, debug)  # the same again: a no-op
            (stored,) = await kc.ephemeral_containers(pod)
            assert (stored["name"], stored["image"], stored["command"]) == (
                "chaos-net",
                "busybox",
                ["sleep", "3600"],
            )

            with pytest.raises(Invalid) as exc:
                await kc.add_ephemeral_container(pod, {**debug, "command": ["sleep", "1"]})
            assert str(exc.value).startswith(
                f"add ephemeral container chaos-net to pod {ns}/target failed: 422"
            )

            stale = PodRef(ns, "target", "00000000-0000-0000-0000-000000000000", None, None)
            with pytest.raises(Conflict, match="replaced by a new pod with the same name"):
                await kc.add_ephemeral_container(stale, {**debug, "name": "other"})

            # Pod Security (baseline) refuses NET_ADMIN, which network faults need.
            await asyncio.to_thread(_label_namespace, kube_cluster, ns, "baseline")
            net_admin = {
                **debug,
                "name": "chaos-tc",
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
            }
            with pytest.raises(Forbidden) as denied:
                await kc.add_ephemeral_container(pod, net_admin)
            assert "NET_ADMIN" in str(denied.value)
            assert "pod-security.kubernetes.io/enforce" in (denied.value.hint or "")
            assert [c["name"] for c in await kc.ephemeral_containers(pod)] == ["chaos-net"]

    run(main())
    with kube_cluster.api_client() as api:
        spec = client.CoreV1Api(api).read_namespaced_pod("target", ns).spec
    assert [c.name for c in spec.ephemeral_containers] == ["chaos-net"]


def _label_namespace(cluster: Any, ns: str, level: str) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        client.CoreV1Api(api).patch_namespace(
            ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}}
        )


@k8s
def test_kubeconfig_from_environment_only_when_asked(
    kube_cluster: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # $KUBECONFIG may list several files; missing ones are skipped like kubectl does.
    monkeypatch.setenv(
        "KUBECONFIG", os.pathsep.join([str(tmp_path / "x"), kube_cluster.kubeconfig])
    )

    async def main() -> None:
        async with await KubeClient.connect() as kc:
            assert kube_cluster.kubeconfig in kc.source
            assert await kc.server_version() == kube_cluster.kube_version

    run(main())
