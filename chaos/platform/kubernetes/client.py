"""The Kubernetes API as the runner needs it: async, retried, with errors a person can act on.

:class:`KubeClient` is the only object that talks to an API server. It uses the official
client's configuration loading (kubeconfig, exec plugins, in-cluster service account) and its
authenticated HTTP transport, but builds requests and reads responses as plain JSON: the
generated typed API (thousands of pydantic models) adds start-up time and nothing we need. The
client library is imported only when :meth:`KubeClient.connect` runs, so importing this module
keeps the CLI fast.

Each call runs the synchronous transport in a worker thread and goes through
:func:`~.retry.call_with_retries`; failures come out as :mod:`.errors` exceptions that say what
was attempted, on what, and why it failed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from chaos.errors import InvalidInput

from .access import AccessCheck
from .errors import Conflict, Forbidden, HttpFailure, LeaseHeld, NotFound
from .models import PodRef, WorkloadStatus, controller_of, pod_ref, workload_status
from .retry import RetryPolicy, call_with_retries

__all__ = ["REPORTING_CONTROLLER", "KubeClient", "LeaseInfo"]

T = TypeVar("T")
JSON = dict[str, Any]

#: ``reportingController`` of the Events the runner emits.
REPORTING_CONTROLLER = "chaos-runner"
#: Requests one client can have in flight (threads, and kept-alive connections).
THREADS = 16
_IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_DEFAULT_KUBECONFIG = "~/.kube/config"
#: How many read-modify-write rounds a lease operation makes before giving up on contention.
_LEASE_ROUNDS = 5
#: The Event API refuses a note longer than this many bytes.
_EVENT_NOTE_LIMIT = 1024

# kind -> (apiVersion, plural, namespaced) for the kinds the runner touches by name.
_KINDS: dict[str, tuple[str, str, bool]] = {
    "Pod": ("v1", "pods", True),
    "Service": ("v1", "services", True),
    "ConfigMap": ("v1", "configmaps", True),
    "Namespace": ("v1", "namespaces", False),
    "Node": ("v1", "nodes", False),
    "Deployment": ("apps/v1", "deployments", True),
    "StatefulSet": ("apps/v1", "statefulsets", True),
    "DaemonSet": ("apps/v1", "daemonsets", True),
    "ReplicaSet": ("apps/v1", "replicasets", True),
    "Job": ("batch/v1", "jobs", True),
    "CronJob": ("batch/v1", "cronjobs", True),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets", True),
    "Lease": ("coordination.k8s.io/v1", "leases", True),
}
_SCALABLE = ("Deployment", "StatefulSet", "ReplicaSet")


def _path(
    api_version: str,
    plural: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def _micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _grace_seconds(grace_period: float | None) -> int | None:
    return None if grace_period is None else max(0, math.ceil(grace_period))


def _is_precondition_failure(failure: HttpFailure) -> bool:
    # 1.34 says "the UID in the precondition (...) does not match"; older "Precondition failed".
    return failure.status == 409 and "precondition" in failure.body.lower()


@dataclass(frozen=True)
class LeaseInfo:
    """A coordination.k8s.io/v1 Lease as read: who holds it and until when."""

    namespace: str
    name: str
    holder: str | None
    renewed_at: datetime | None
    duration_s: int
    transitions: int
    resource_version: str
    uid: str

    @property
    def expires_at(self) -> datetime | None:
        if self.renewed_at is None:
            return None
        return self.renewed_at + timedelta(seconds=self.duration_s)

    def held_by_other(self, holder: str, now: datetime) -> bool:
        """Someone other than ``holder`` holds it and it has not expired."""
        if not self.holder or self.holder == holder:
            return False
        expires = self.expires_at
        return expires is not None and expires > now

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> LeaseInfo:
        meta, spec = obj.get("metadata", {}), obj.get("spec", {})
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            holder=spec.get("holderIdentity") or None,
            renewed_at=_parse_time(spec.get("renewTime") or spec.get("acquireTime")),
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(meta.get("resourceVersion", "")),
            uid=str(meta.get("uid", "")),
        )


class KubeClient:
    """An async client for one API server; create it with :meth:`connect`, end with
    :meth:`close` (or ``async with``)."""

    def __init__(self, api: Any, *, source: str, retry: RetryPolicy) -> None:
        # ``api`` is a kubernetes.client.ApiClient; kept untyped: this class is its boundary.
        self._api = api
        self._retry = retry
        # Its own threads (the blocking client runs in them): asyncio's default pool has only
        # cores + 4 workers, which would cap a 500-pod kill at 6 requests in flight.
        self._threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="kube")
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}
        #: Where the configuration came from ("kubeconfig /path", "in-cluster service account").
        self.source = source
        self.host: str = str(api.configuration.host)
        self._instance = f"{REPORTING_CONTROLLER}-{socket.gethostname()}"[:128]

    # ------------------------------------------------------------------------------------------
    # Connecting
    # ------------------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        retry: RetryPolicy | None = None,
    ) -> KubeClient:
        """Connect with ``kubeconfig`` (a path), else ``$KUBECONFIG``, else ``~/.kube/config``,
        else the in-cluster service account. Raises :class:`~chaos.errors.InvalidInput` naming
        everything it tried when none of them works. Makes no request: the first call does."""
        return await asyncio.to_thread(
            cls._connect_sync, kubeconfig, context, retry or RetryPolicy()
        )

    @classmethod
    def _connect_sync(
        cls, kubeconfig: str | None, context: str | None, retry: RetryPolicy
    ) -> KubeClient:
        # Older clients ship no type information; v37+ does.
        from kubernetes import client as k8s  # type: ignore[import-untyped, unused-ignore]
        from kubernetes import config as k8s_config  # type: ignore[import-untyped, unused-ignore]

        tried: list[str] = []
        config_file: str | None = None
        label = ""
        if kubeconfig is not None:
            if not Path(kubeconfig).expanduser().is_file():
                raise InvalidInput(
                    f"cannot connect to Kubernetes: kubeconfig {kubeconfig} does not exist",
                    hint="pass the path of an existing kubeconfig file",
                )
            config_file, label = str(Path(kubeconfig).expanduser()), f"kubeconfig {kubeconfig}"
        else:
            env = os.environ.get("KUBECONFIG", "")
            paths = [p for p in env.split(os.pathsep) if p]
            existing = [p for p in paths if Path(p).expanduser().is_file()]
            if existing:
                config_file = os.pathsep.join(str(Path(p).expanduser()) for p in existing)
                label = f"$KUBECONFIG ({config_file})"
            else:
                tried.append(
                    f"$KUBECONFIG={env} (no such file)" if env else "$KUBECONFIG (not set)"
                )
                default = Path(_DEFAULT_KUBECONFIG).expanduser()
                if default.is_file():
                    config_file, label = str(default), f"kubeconfig {_DEFAULT_KUBECONFIG}"
                else:
                    tried.append(f"{_DEFAULT_KUBECONFIG} (no such file)")

        cfg = k8s.Configuration()
        cfg.connection_pool_maxsize = THREADS  # one kept-alive connection per thread
        if config_file is not None:
            try:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call, unused-ignore]
                    config_file=config_file,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
            except Exception as exc:
                raise InvalidInput(
                    f"cannot connect to Kubernetes: loading {label}"
                    f"{f' (context {context})' if context else ''} failed: {exc}",
                    hint="check the file with `kubectl config view`"
                    + (
                        " and the context name with `kubectl config get-contexts`"
                        if context
                        else ""
                    ),
                ) from exc
        else:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            if not host or not _IN_CLUSTER_TOKEN.is_file():
                tried.append(
                    "in-cluster service account ($KUBERNETES_SERVICE_HOST "
                    f"{'set' if host else 'not set'}, {_IN_CLUSTER_TOKEN} "
                    f"{'present' if _IN_CLUSTER_TOKEN.is_file() else 'missing'})"
                )
                raise InvalidInput(
                    "cannot connect to Kubernetes: no configuration found; tried "
                    + "; ".join(tried),
                    hint="pass --kubeconfig PATH, set $KUBECONFIG, or run inside a pod with a "
                    "service account",
                )
            if context:
                raise InvalidInput(
                    f"cannot connect to Kubernetes: context {context} was asked for, but no "
                    f"kubeconfig was found (tried {'; '.join(tried)})",
                    hint="pass --kubeconfig PATH or set $KUBECONFIG",
                )
            try:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call, unused-ignore]
                    client_configuration=cfg
                )
            except Exception as exc:
                raise InvalidInput(
                    f"cannot connect to Kubernetes: the in-cluster service account failed: {exc}"
                ) from exc
            label = "in-cluster service account"
        # Our retry loop is the only one: urllib3's own would hide failures and double the wait.
        cfg.retries = False
        api = k8s.ApiClient(cfg)
        api.user_agent = f"{REPORTING_CONTROLLER}/0.1"
        return cls(api, source=label, retry=retry)

    def set_user_agent(self, agent: str) -> None:
        """The User-Agent of every later request (the audit log shows it)."""
        self._api.user_agent = agent

    async def close(self) -> None:
        await asyncio.to_thread(self._api.close)
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------
    # The transport: one JSON request, and the retried call around it
    # ------------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        text: bool = False,
    ) -> JSON:
        """One HTTP request (blocking); a non-2xx response raises :class:`HttpFailure`.
        ``text``: the body is plain text (pod logs), returned as ``{"text": ...}``."""
        resource_path = f"{path}?{urlencode(query)}" if query else path
        # The log endpoint answers 406 to Accept: text/plain; kubectl sends this.
        headers = {"Accept": "application/json, */*" if text else "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self._api.param_serialize(
            method=method,
            resource_path=resource_path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(
            method, url, header_params=headers, body=body,
            _request_timeout=self._retry.request_timeout,
        )  # fmt: skip
        raw = response.read()
        body_text = raw.decode("utf-8", "replace") if raw else ""
        status = int(response.status)
        if not 200 <= status <= 299:
            raise HttpFailure(status, str(response.reason or ""), body_text,
                              dict(response.headers))
        if text:
            return {"text": body_text}
        if not body_text:
            return {}
        parsed = json.loads(body_text)
        return parsed if isinstance(parsed, dict) else {"value": parsed}

    async def _call(self, action: str, target: str, fn: Callable[[int], T]) -> T:
        return await call_with_retries(self._retry, action, target, fn, self._threads)

    async def _get(self, action: str, target: str, path: str, **query: str) -> JSON:
        return await self._call(action, target, lambda _: self._request("GET", path, query=query))

    # ------------------------------------------------------------------------------------------
    # Cluster and namespaces
    # ------------------------------------------------------------------------------------------

    async def server_version(self) -> str:
        """The API server's ``gitVersion``, e.g. ``v1.34.4``."""
        info = await self._get("get server version", f"of {self.host}", "/version")
        return str(info.get("gitVersion", ""))

    async def namespace_exists(self, name: str) -> bool:
        try:
            await self._get("get namespace", name, _path("v1", "namespaces", None, name))
        except NotFound:
            return False
        return True

    # ------------------------------------------------------------------------------------------
    # Pods
    # ------------------------------------------------------------------------------------------

    async def list_pods(
        self,
        namespace: str,
        *,
        labels: dict[str, str] | None = None,
        field_selector: str | None = None,
        owner: tuple[str, str] | None = None,
    ) -> list[PodRef]:
        """The pods in ``namespace`` matching every given filter, sorted by name. ``owner`` is
        ``("Deployment", "checkout")``, ``("StatefulSet", "db")``, ...; a Deployment owns its pods
        through ReplicaSets. Resolving Deployments needs ``list replicasets`` as well; without
        it a pod's owner shows as its ReplicaSet."""
        query: dict[str, str] = {}
        filters: list[str] = []
        if labels:
            query["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            filters.append(f"labels {query['labelSelector']}")
        if field_selector:
            query["fieldSelector"] = field_selector
            filters.append(f"fields {field_selector}")
        if owner:
            filters.append(f"owner {owner[0]}/{owner[1]}")
        target = f"in namespace {namespace}" + (f" ({', '.join(filters)})" if filters else "")
        listing = await self._get("list pods", target, _path("v1", "pods", namespace), **query)
        pods: list[JSON] = [p for p in listing.get("items") or [] if isinstance(p, dict)]

        rs_owners: dict[str, str | None] = {}
        if (owner and owner[0] == "Deployment") or any(
            (controller_of(p) or ("", ""))[0] == "ReplicaSet" for p in pods
        ):
            rs_owners = await self._replicaset_owners(namespace, required=bool(owner))

        refs = []
        for pod in pods:
            ref = pod_ref(pod, rs_owners)
            if owner and not (ref.owner == f"{owner[0]}/{owner[1]}" or controller_of(pod) == owner):
                continue
            refs.append(ref)
        return sorted(refs, key=lambda r: r.name)

    async def _replicaset_owners(self, namespace: str, *, required: bool) -> dict[str, str | None]:
        try:
            listing = await self._get(
                "list replicasets",
                f"in namespace {namespace} (to find the Deployments owning its pods)",
                _path("apps/v1", "replicasets", namespace),
            )
        except Forbidden:
            if required:
                raise
            return {}
        owners: dict[str, str | None] = {}
        for rs in listing.get("items") or []:
            controller = controller_of(rs)
            owners[str(rs.get("metadata", {}).get("name", ""))] = (
                f"{controller[0]}/{controller[1]}" if controller else None
            )
        return owners

    async def get_pod(self, namespace: str, name: str) -> PodRef:
        pod = await self._get(
            "get pod", f"{namespace}/{name}", _path("v1", "pods", namespace, name)
        )
        rs_owners: dict[str, str | None] = {}
        if (controller_of(pod) or ("", ""))[0] == "ReplicaSet":
            rs_owners = await self._replicaset_owners(namespace, required=False)
        return pod_ref(pod, rs_owners)

    async def delete_pod(self, pod: PodRef, *, grace_period: float | None) -> None:
        """Delete exactly this pod (uid precondition: never a same-named replacement). A pod
        that is already gone counts as deleted."""
        options: JSON = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": pod.uid},
        }
        grace = _grace_seconds(grace_period)
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        path = _path("v1", "pods", pod.namespace, pod.name)

        def delete(attempt: int) -> None:
            try:
                self._request("DELETE", path, body=options)
            except HttpFailure as failure:
                if failure.status == 404:
                    return
                # On a retry, a uid mismatch means our lost first attempt deleted the pod and a
                # controller already made a same-named replacement: ours is gone.
                if attempt > 1 and _is_precondition_failure(failure):
                    return
                raise

        await self._call("delete pod", f"{pod.namespace}/{pod.name}", delete)

    async def evict_pod(self, pod: PodRef, *, grace_period: float | None) -> None:
        """Evict this pod through the policy/v1 Eviction API, which honours
        PodDisruptionBudgets: a budget that allows no disruption raises
        :class:`~.errors.DisruptionBudgetBlocked` at once (not retried). Gone counts as done."""
        options: JSON = {"preconditions": {"uid": pod.uid}}
        grace = _grace_seconds(grace_period)
        if grace is not None:
            options["gracePeriodSeconds"] = grace
        body: JSON = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "deleteOptions": options,
        }
        path = _path("v1", "pods", pod.namespace, pod.name, "eviction")

        def evict(attempt: int) -> None:
            try:
                self._request("POST", path, body=body)
            except HttpFailure as failure:
                if failure.status == 404 or (attempt > 1 and _is_precondition_failure(failure)):
                    return
                raise

        await self._call("evict pod", f"{pod.namespace}/{pod.name}", evict)

    # ------------------------------------------------------------------------------------------
    # Ephemeral containers
    # ------------------------------------------------------------------------------------------

    async def add_ephemeral_container(self, pod: PodRef, container: dict[str, Any], *,
                                      dry_run: bool = False) -> None:
        """Add ``container`` to this pod's ``spec.ephemeralContainers`` (the pods/
        ephemeralcontainers subresource; a strategic merge keyed by container name, so a retry
        of the same container is a no-op). The API refuses changing an existing one (Invalid)
        and Pod Security may refuse capabilities such as NET_ADMIN (Forbidden).

        ``dry_run``: the API server runs validation and admission (Pod Security, OpenShift SCC,
        webhooks) and persists nothing, so preflight learns of a refusal before any change."""
        name = str(container.get("name", ""))
        if not name:
            raise InvalidInput("an ephemeral container needs a name")
        patch: JSON = {
            # The uid in the patch makes the server refuse a same-named replacement pod.
            "metadata": {"uid": pod.uid},
            "spec": {"ephemeralContainers": [container]},
        }
        path = _path("v1", "pods", pod.namespace, pod.name, "ephemeralcontainers")
        action = f"{'dry-run ' if dry_run else ''}add ephemeral container {name} to pod"
        target = f"{pod.namespace}/{pod.name}"
        query = {"dryRun": "All"} if dry_run else None

        def add(_: int) -> None:
            try:
                self._request(
                    "PATCH", path, query=query, body=patch,
                    content_type="application/strategic-merge-patch+json",
                )
            except HttpFailure as failure:
                if failure.status == 422 and "metadata.uid" in failure.body:
                    raise Conflict(
                        f"{action} {target} failed: the pod was replaced by a new pod with the "
                        f"same name (expected uid {pod.uid})",
                        hint="the pod we planned to target is gone; plan the fault again",
                        status=409,
                    ) from failure
                raise

        await self._call(action, target, add)

    async def pod_object(self, pod: PodRef) -> dict[str, Any]:
        """This very pod as the API's JSON; NotFound if it is gone or was replaced by a new pod
        with the same name (another uid)."""
        obj = await self._get(
            "get pod", f"{pod.namespace}/{pod.name}", _path("v1", "pods", pod.namespace, pod.name)
        )
        uid = obj.get("metadata", {}).get("uid")
        if uid != pod.uid:
            raise NotFound(
                f"get pod {pod.namespace}/{pod.name} failed: it was replaced by a new pod with "
                f"the same name (uid {uid}, expected {pod.uid})",
                status=None,
            )
        return obj

    async def ephemeral_containers(self, pod: PodRef) -> list[dict[str, Any]]:
        """This pod's ephemeral containers as the API stores them (``spec``)."""
        obj = await self.pod_object(pod)
        return [
            c for c in obj.get("spec", {}).get("ephemeralContainers") or [] if isinstance(c, dict)
        ]

    async def pod_log(self, pod: PodRef, container: str, *, limit_bytes: int = 65536) -> str:
        """The log of one container of this pod (the kubelet serves it through the API
        server; needs ``get pods/log``). The last ``limit_bytes`` are enough for a helper."""
        path = _path("v1", "pods", pod.namespace, pod.name, "log")
        query = {"container": container, "limitBytes": str(limit_bytes)}
        result = await self._call(
            f"read the log of container {container} of pod", f"{pod.namespace}/{pod.name}",
            lambda _: self._request("GET", path, query=query, text=True),
        )
        return str(result.get("text", ""))

    # ------------------------------------------------------------------------------------------
    # Workloads and arbitrary resources
    # ------------------------------------------------------------------------------------------

    async def get_deployment(self, namespace: str, name: str) -> WorkloadStatus:
        return await self._workload("Deployment", namespace, name)

    async def get_statefulset(self, namespace: str, name: str) -> WorkloadStatus:
        return await self._workload("StatefulSet", namespace, name)

    async def _workload(self, kind: str, namespace: str, name: str) -> WorkloadStatus:
        api_version, plural, _ = _KINDS[kind]
        obj = await self._get(
            f"get {kind.lower()}",
            f"{namespace}/{name}",
            _path(api_version, plural, namespace, name),
        )
        return workload_status(kind, obj)

    async def scale(self, namespace: str, kind: str, name: str, replicas: int) -> None:
        """Set the replica count of a Deployment, StatefulSet or ReplicaSet (scale subresource)."""
        if kind not in _SCALABLE:
            raise InvalidInput(
                f"cannot scale {kind} {namespace}/{name}: only {', '.join(_SCALABLE)}"
            )
        if replicas < 0:
            raise InvalidInput(f"cannot scale {kind} {namespace}/{name} to {replicas} replicas")
        api_version, plural, _ = _KINDS[kind]
        path = _path(api_version, plural, namespace, name, "scale")
        patch = {"spec": {"replicas": replicas}}
        await self._call(
            f"scale {kind.lower()}",
            f"{namespace}/{name} to {replicas} replicas",
            lambda _: self._request(
                "PATCH", path, body=patch, content_type="application/merge-patch+json"
            ),
        )

    async def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of ``kind`` in ``api_version``, by discovery of that one group
        version (cached), so any kind the server serves works, CRDs included."""
        key = (api_version, kind)
        if key in self._resources:
            return self._resources[key]
        if kind in _KINDS and _KINDS[kind][0] == api_version:
            _, plural, namespaced = _KINDS[kind]
            self._resources[key] = (plural, namespaced)
            return plural, namespaced
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            listing = await self._get("discover", f"API {api_version}", path)
        except NotFound as exc:
            raise NotFound(
                f"discover API {api_version} failed: the API server does not serve {api_version}",
                hint="check the apiVersion (kubectl api-versions); a CRD may not be installed",
            ) from exc
        kinds = []
        for res in listing.get("resources") or []:
            if "/" in str(res.get("name", "")):
                continue  # subresources
            kinds.append(str(res.get("kind")))
            if res.get("kind") == kind:
                found = (str(res["name"]), bool(res.get("namespaced")))
                self._resources[key] = found
                return found
        raise NotFound(
            f"discover kind {kind} in {api_version} failed: the API server does not serve it",
            hint=f"{api_version} serves: {', '.join(sorted(set(kinds))) or 'nothing'}",
        )

    async def get_resource(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any]:
        """Any object by apiVersion, kind and name, as the API's JSON."""
        plural, namespaced = await self._resource(api_version, kind)
        if namespaced and not namespace:
            raise InvalidInput(f"cannot get {kind} {name}: {kind} is namespaced; give a namespace")
        ns = namespace if namespaced else None
        target = f"{ns}/{name}" if ns else name
        return await self._get(f"get {kind}", target, _path(api_version, plural, ns, name))

    async def annotate(
        self,
        kind: str,
        namespace: str,
        name: str,
        annotations: dict[str, str | None],
        *,
        api_version: str | None = None,
    ) -> None:
        """Merge ``annotations`` into the object's; a None value removes that annotation."""
        if api_version is None:
            if kind not in _KINDS:
                raise InvalidInput(
                    f"cannot annotate {kind} {namespace}/{name}: unknown kind; pass api_version "
                    f"or use one of {', '.join(sorted(_KINDS))}"
                )
            api_version = _KINDS[kind][0]
        plural, namespaced = await self._resource(api_version, kind)
        ns = namespace if namespaced else None
        path = _path(api_version, plural, ns, name)
        patch = {"metadata": {"annotations": annotations}}
        await self._call(
            f"annotate {kind.lower()}",
            f"{ns}/{name}" if ns else name,
            lambda _: self._request(
                "PATCH", path, body=patch, content_type="application/merge-patch+json"
            ),
        )

    # ------------------------------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------------------------------

    async def emit_event(
        self,
        *,
        namespace: str,
        involved: dict[str, str],
        reason: str,
        message: str,
        type_: str = "Normal",
        action: str | None = None,
    ) -> None:
        """Record an events.k8s.io/v1 Event about ``involved`` (``kind``, ``name`` and optionally
        ``apiVersion``, ``namespace``, ``uid``). Raises mapped errors; callers that must not
        fail because of an Event log and swallow them."""
        kind, obj_name = involved.get("kind", ""), involved.get("name", "")
        if not kind or not obj_name:
            raise InvalidInput(f"an Event needs the involved object's kind and name: {involved}")
        regarding = {
            "apiVersion": involved.get("apiVersion") or _KINDS.get(kind, ("v1",))[0],
            "kind": kind,
            "name": obj_name,
            "namespace": involved.get("namespace", namespace),
        }
        if involved.get("uid"):
            regarding["uid"] = involved["uid"]
        note = message.encode()[:_EVENT_NOTE_LIMIT].decode("utf-8", "ignore")
        # The name is ours and unique (as client-go names them), so a 409 on a retry is the
        # echo of our own earlier create, whose response was lost.
        event_name = f"{obj_name}.{time.time_ns():x}"
        body: JSON = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "eventTime": _micro_time(datetime.now(UTC)),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance,
            "action": (action or reason)[:128],
            "reason": reason[:128],
            "note": note,
            "type": type_,
            "regarding": regarding,
        }
        path = _path("events.k8s.io/v1", "events", namespace)

        def create(attempt: int) -> None:
            try:
                self._request("POST", path, body=body)
            except HttpFailure as failure:
                if attempt > 1 and failure.status == 409:
                    return
                raise

        await self._call(f"emit event {reason} about", f"{kind} {namespace}/{obj_name}", create)

    # ------------------------------------------------------------------------------------------
    # Access review
    # ------------------------------------------------------------------------------------------

    async def access_review(self, checks: list[AccessCheck]) -> list[AccessCheck]:
        """Ask the API server (SelfSubjectAccessReview) whether we may do each check; fills in
        ``allowed`` and ``reason`` on every check and returns the denied ones, in order."""

        async def review(check: AccessCheck) -> None:
            attributes: JSON = {"verb": check.verb, "resource": check.resource}
            if check.group:
                attributes["group"] = check.group
            if check.subresource:
                attributes["subresource"] = check.subresource
            if check.namespace:
                attributes["namespace"] = check.namespace
            if check.name:
                attributes["name"] = check.name
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            }
            path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
            result = await self._call(
                "review access to",
                check.describe(),
                lambda _: self._request("POST", path, body=body),
            )
            status = result.get("status", {})
            check.allowed = bool(status.get("allowed"))
            check.reason = str(status.get("reason") or status.get("evaluationError") or "")

        await asyncio.gather(*(review(c) for c in checks))
        return [c for c in checks if not c.allowed]

    # ------------------------------------------------------------------------------------------
    # Leases: one run per target at a time
    # ------------------------------------------------------------------------------------------

    def _lease_path(self, namespace: str, name: str | None = None) -> str:
        return _path("coordination.k8s.io/v1", "leases", namespace, name)

    async def _read_lease(self, action: str, namespace: str, name: str) -> JSON | None:
        try:
            return await self._get(action, f"{namespace}/{name}", self._lease_path(namespace, name))
        except NotFound:
            return None

    async def _write_lease(self, action: str, obj: JSON, method: str) -> bool:
        """PUT (optimistic, by resourceVersion) or POST a lease; False on a 409, meaning
        re-read and decide again."""
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        path = self._lease_path(ns, name) if method == "PUT" else self._lease_path(ns)

        def write(_: int) -> bool:
            try:
                self._request(method, path, body=obj)
            except HttpFailure as failure:
                if failure.status == 409:
                    return False
                raise
            return True

        return await self._call(action, f"{ns}/{name}", write)

    def _held(self, action: str, info: LeaseInfo, now: datetime) -> LeaseHeld:
        expires = info.expires_at
        until = (
            f" until {_micro_time(expires)[:19]}Z ({(expires - now).total_seconds():.0f}s from now)"
            if expires
            else ""
        )
        return LeaseHeld(
            f"{action} {info.namespace}/{info.name} failed: held by {info.holder}{until}",
            holder=str(info.holder),
            expires_at=expires,
            hint="another run is injecting into this target; wait for it to finish. If that run "
            "died, the lease expires by itself, or remove it with: kubectl delete lease -n "
            f"{info.namespace} {info.name}",
        )

    async def acquire_lease(self, namespace: str, name: str, holder: str, duration_s: int) -> None:
        """Take the lease for ``holder`` for ``duration_s`` seconds: create it, renew it if we
        hold it, or take it over if its holder let it expire. Raises
        :class:`~.errors.LeaseHeld` if someone else holds it."""
        action = "acquire lease"
        for _ in range(_LEASE_ROUNDS):
            current = await self._read_lease(action, namespace, name)
            now = datetime.now(UTC)
            spec: JSON = {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration_s,
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            }
            if current is None:
                obj: JSON = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": spec,
                }
                if await self._write_lease(action, obj, "POST"):
                    return
                continue  # someone created it meanwhile (or our lost first try did): re-read
            info = LeaseInfo.parse(current)
            if info.held_by_other(holder, now):
                raise self._held(action, info, now)
            if info.holder == holder:
                spec["acquireTime"] = (
                    current.get("spec", {}).get("acquireTime") or spec["acquireTime"]
                )
                spec["leaseTransitions"] = info.transitions
            else:
                spec["leaseTransitions"] = info.transitions + 1
            current["spec"] = {**current.get("spec", {}), **spec}
            if await self._write_lease(action, current, "PUT"):
                return
        raise Conflict(
            f"{action} {namespace}/{name} failed: it changed under us {_LEASE_ROUNDS} times in a "
            "row",
            hint="another run is competing for the same target; try again",
        )

    async def renew_lease(self, namespace: str, name: str, holder: str) -> None:
        """Extend our lease by its duration from now. Raises :class:`~.errors.LeaseHeld` if it
        is no longer ours, :class:`~.errors.NotFound` if it was deleted."""
        action = "renew lease"
        for _ in range(_LEASE_ROUNDS):
            current = await self._read_lease(action, namespace, name)
            now = datetime.now(UTC)
            if current is None:
                raise NotFound(
                    f"{action} {namespace}/{name} failed: the lease no longer exists",
                    hint="someone deleted it; acquire it again before injecting more",
                )
            info = LeaseInfo.parse(current)
            if info.holder != holder:
                raise self._held(action, info, now)
            current.setdefault("spec", {})["renewTime"] = _micro_time(now)
            if await self._write_lease(action, current, "PUT"):
                return
        raise Conflict(f"{action} {namespace}/{name} failed: it changed under us repeatedly")

    async def release_lease(self, namespace: str, name: str, holder: str) -> None:
        """Delete the lease if ``holder`` holds it; otherwise (gone, or someone else's) do
        nothing."""
        action = "release lease"
        for _ in range(_LEASE_ROUNDS):
            current = await self._read_lease(action, namespace, name)
            if current is None:
                return
            info = LeaseInfo.parse(current)
            if info.holder != holder:
                return
            options = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"uid": info.uid, "resourceVersion": info.resource_version},
            }
            path = self._lease_path(namespace, name)

            def delete(_: int, path: str = path, options: JSON = options) -> bool:
                try:
                    self._request("DELETE", path, body=options)
                except HttpFailure as failure:
                    if failure.status == 404:
                        return True
                    if failure.status == 409:
                        return False
                    raise
                return True

            if await self._call(action, f"{namespace}/{name}", delete):
                return
        raise Conflict(f"{action} {namespace}/{name} failed: it changed under us repeatedly")

    async def read_lease(self, namespace: str, name: str) -> LeaseInfo | None:
        current = await self._read_lease("get lease", namespace, name)
        return None if current is None else LeaseInfo.parse(current)
