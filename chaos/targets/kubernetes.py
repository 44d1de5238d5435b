"""The Kubernetes platform: a run's hold on a cluster and the wiring of its faults and probes.

Targets are resolved when a fault is planned: the pods a selector matches, narrowed by its mode
(one, all, fixed N, percent) with a choice seeded by the candidates themselves, so ``chaos plan``
names the exact pods a run would touch. The blast radius is capped by ``limits.maxPods`` and
``limits.maxPercent`` before anything happens. ``preflight`` checks every permission the run
needs, for injecting *and* reverting (SelfSubjectAccessReview), from what each fault and probe
kind declares, then each fault's own read-only checks (a dry-run of helper containers, Pod
Security, non-root pods). ``prepare`` takes a Lease per target namespace so two runs never inject
into the same namespace at once, and keeps it: losing it (another holder, or renewals failing
until it would expire) stops the run, which reverts everything.

Events go on the owning workload, one per workload and action, not one per pod. Every request
carries the run id in its User-Agent, so the API server's audit log attributes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from chaos import __version__
from chaos.errors import ChaosError, InvalidInput, PermissionDenied, TargetNotFound
from chaos.platform.kubernetes import (
    AccessCheck,
    KubeClient,
    LeaseHeld,
    PodRef,
    rules_yaml,
)

if TYPE_CHECKING:
    import httpx

    from chaos.engine.protocols import Fault, Probe, StopRun
    from chaos.faults.contract import Permission, PlannedFault
    from chaos.model.common import PodSelector
    from chaos.model.experiment import Experiment, FaultSpec, ProbeSpec, RollbackSpec
    from chaos.targets.local import LocalPlatform

LEASE_NAME = "chaos-runner"
LEASE_SECONDS = 30
LEASE_RENEW_EVERY = 10.0
#: After a failed renewal, try again this often while the Lease has not expired.
LEASE_RETRY_EVERY = 2.0
#: Pod names listed in one Event before "and N more".
EVENT_NAMES = 20

ClientFactory = Callable[[], Awaitable[KubeClient]]

#: What every Kubernetes fault needs in its namespace besides its kind's own permissions: list
#: the pods to select them, hold the Lease (its own one only: a runner may not touch another
#: component's Leases; RBAC cannot narrow `create` by name), and leave Events.
#: (verb, resource, group, resourceName)
BASE_PERMISSIONS: tuple[tuple[str, str, str, str], ...] = (
    ("list", "pods", "", ""),
    ("create", "leases", "coordination.k8s.io", ""),
    ("get", "leases", "coordination.k8s.io", LEASE_NAME),
    ("update", "leases", "coordination.k8s.io", LEASE_NAME),
    ("delete", "leases", "coordination.k8s.io", LEASE_NAME),
    ("create", "events", "events.k8s.io", ""),
)


def _owner_kind_name(pod: PodRef) -> tuple[str, str] | None:
    if pod.owner and "/" in pod.owner:
        kind, name = pod.owner.split("/", 1)
        return kind, name
    return None


class KubePlatform:
    """The Platform protocol against a Kubernetes cluster; the KubeContext of Kubernetes faults
    and the ProbeContext of probes (HTTP, TCP and command probes run from this machine)."""

    def __init__(self, experiment: Experiment, run_id: str, *, connect: ClientFactory,
                 local: LocalPlatform | None = None) -> None:
        self._experiment = experiment
        self._run_id = run_id
        self._connect = connect
        self._client: KubeClient | None = None
        self._leases: list[str] = []
        self._renew: asyncio.Task[None] | None = None
        self._local = local
        self._planned: list[tuple[FaultSpec, PlannedFault[Any]]] = []
        self._touched: dict[str, PodRef] = {}

    # -- KubeContext

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def experiment(self) -> Experiment:
        return self._experiment

    async def client(self) -> KubeClient:
        if self._client is None:
            self._client = await self._connect()
            # The audit log then says which run made every request.
            self._client.set_user_agent(f"chaos-runner/{__version__} (run {self._run_id})")
        return self._client

    def namespace(self, selector_ns: str | None) -> str:
        namespace = selector_ns or self._experiment.spec.target.namespace
        if namespace is None:  # the loader already requires one; keep mypy and people honest
            raise InvalidInput("no namespace: set spec.target.namespace")
        return namespace

    async def select(self, fault: str, selector: PodSelector) -> list[PodRef]:
        client = await self.client()
        namespace = self.namespace(selector.namespace)
        # No namespace lookup: that needs a cluster-wide permission a least-privilege runner
        # does not have. A missing namespace simply has no pods.
        owner = (selector.owner.kind, selector.owner.name) if selector.owner else None
        pods = [p for p in await client.list_pods(namespace, labels=selector.labels or None,
                                                   field_selector=selector.field_selector,
                                                   owner=owner) if not p.terminating]
        if not pods:
            raise TargetNotFound(
                f"no running pod in namespace '{namespace}' matches {selector.describe()}",
                hint="check the labels (kubectl get pods --show-labels) and that the namespace "
                "exists",
            )
        count = selector.mode.count(len(pods))
        limits = self._experiment.spec.limits
        if count > limits.max_pods:
            raise InvalidInput(
                f"fault '{fault}' would hit {count} pods ({selector.mode} of {len(pods)}), more "
                f"than limits.maxPods={limits.max_pods}",
                hint="narrow the selector or the mode, or raise limits.maxPods",
            )
        if limits.max_percent is not None and count / len(pods) > limits.max_percent + 1e-9:
            raise InvalidInput(
                f"fault '{fault}' would hit {count} of {len(pods)} matching pods "
                f"({count / len(pods) * 100:.0f}%), more than limits.maxPercent="
                f"{limits.max_percent * 100:g}%",
                hint="narrow the selector or the mode, or raise limits.maxPercent",
            )
        # Seeded by what is being chosen from, not by the run: `chaos plan` then names exactly
        # the pods a run started right after it will hit, while a Deployment whose pods were
        # replaced by the last kill gets a fresh choice.
        names = ",".join(sorted(p.name for p in pods))
        rng = random.Random(f"{self._experiment.metadata.name}/{fault}/{names}")
        return sorted(rng.sample(pods, count), key=lambda p: p.name)

    async def announce(self, spec: FaultSpec, pods: Sequence[PodRef], what: str,
                       done: str) -> None:
        """One Event per owning workload naming its pods (a 500-pod kill would otherwise add
        500 Events); never blocks a revert."""
        groups: dict[tuple[str, str, str], list[PodRef]] = {}
        for pod in pods:
            self._touched.setdefault(pod.uid or f"{pod.namespace}/{pod.name}", pod)
            owner = _owner_kind_name(pod) or ("Pod", pod.name)
            groups.setdefault((pod.namespace, *owner), []).append(pod)
        for group in groups.values():
            names = [p.name for p in group]
            shown = ", ".join(names[:EVENT_NAMES])
            if len(names) > EVENT_NAMES:
                shown += f" and {len(names) - EVENT_NAMES} more"
            await self._event(
                group[0], f"chaos fault {what}",
                f"fault '{spec.name}' ({spec.kind.key}) {what} by run {self._run_id}: {done} "
                f"{len(names)} pod(s): {shown}")

    async def _event(self, pod: PodRef, reason: str, message: str) -> None:
        """An Event on the pod's workload (or the pod); failures never stop a run."""
        client = await self.client()
        owner = _owner_kind_name(pod)
        involved = ({"kind": owner[0], "name": owner[1], "apiVersion": "apps/v1"} if owner
                    else {"kind": "Pod", "name": pod.name, "apiVersion": "v1", "uid": pod.uid})
        involved["namespace"] = pod.namespace
        with contextlib.suppress(ChaosError):
            await client.emit_event(namespace=pod.namespace, involved=involved,
                                    reason=reason.title().replace(" ", ""), message=message)

    # -- ProbeContext

    def _need_local(self, what: str) -> LocalPlatform:
        if self._local is None:
            raise InvalidInput(f"{what} needs the local platform")
        return self._local

    def http_client(self, *, verify: bool = True) -> httpx.AsyncClient:
        return self._need_local("an HTTP probe").http_client(verify=verify)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._need_local("a probe").on_close(closer)

    async def kube_client(self) -> KubeClient:
        return await self.client()

    # -- Platform protocol

    def fault_namespaces(self) -> list[str]:
        """The namespaces the planned faults inject into (where the run holds Leases)."""
        return sorted({self.namespace(s.namespace) for f, _ in self._planned
                       if (s := f.pod_selector) is not None})

    async def plan_fault(self, spec: FaultSpec) -> Fault:
        if spec.platform != "kubernetes":
            raise InvalidInput(f"fault '{spec.name}' ({spec.kind.key}) is not a Kubernetes fault")
        fault = await spec.kind.plan_kubernetes(spec, self)
        self._planned.append((spec, fault))
        return fault

    def access_checks(self) -> list[AccessCheck]:
        """Every permission the run needs, for injecting and for reverting, from what each
        fault, probe and rollback declares."""
        spec = self._experiment.spec
        checks: list[AccessCheck] = []

        def need(verb: str, resource: str, ns: str, group: str = "", sub: str = "",
                 name: str = "") -> None:
            check = AccessCheck(verb, resource, ns, group, sub, name)
            if check not in checks:
                checks.append(check)

        def grant(perms: Sequence[Permission], ns: str) -> None:
            for p in perms:
                need(p.verb, p.resource, ns, p.group, p.subresource)

        for fault, _ in self._planned:
            selector = fault.pod_selector
            if selector is None:
                continue
            ns = self.namespace(selector.namespace)
            for verb, resource, group, name in BASE_PERMISSIONS:
                need(verb, resource, ns, group, name=name)
            if selector.owner is not None and selector.owner.kind == "Deployment":
                need("list", "replicasets", ns, "apps")
            grant(fault.kind.permissions(fault.params), ns)
        for probe in spec.probes:
            ns_of = probe.kind.namespace(probe.params)
            perms = probe.kind.permissions(probe.params)
            if perms:
                grant(perms, self.namespace(ns_of))
        for rollback in spec.rollbacks:
            if rollback.kubernetes is not None:
                scale = rollback.kubernetes.scale
                ns = self.namespace(scale.namespace)
                plural = "deployments" if scale.kind == "Deployment" else "statefulsets"
                need("patch", plural, ns, "apps", "scale")
        return checks

    async def preflight(self) -> None:
        checks = self.access_checks()
        if checks:
            denied = await (await self.client()).access_review(checks)
            if denied:
                listing = "\n".join(f"  - {c.describe()}" for c in denied)
                raise PermissionDenied(
                    f"the run needs permissions it does not have (nothing was touched):\n"
                    f"{listing}\nrules that grant them (add to the Role bound to this "
                    f"identity):\n{rules_yaml(denied)}",
                    hint="see docs/kubernetes.md for the full table of what each fault needs",
                )
        for _, fault in self._planned:
            await fault.preflight()
        if self._local is not None:
            await self._local.preflight()

    async def prepare(self, stop: StopRun | None = None) -> None:
        if self._local is not None:
            await self._local.prepare(stop)
        client = await self.client()
        try:
            for ns in self.fault_namespaces():
                await client.acquire_lease(ns, LEASE_NAME, self._run_id, LEASE_SECONDS)
                self._leases.append(ns)
        except ChaosError as exc:
            await self._release_leases()
            raise InvalidInput(f"{exc}", hint="another run is injecting into this namespace; "
                               "wait for it, or stop it (it reverts on SIGINT/SIGTERM)") from exc
        if self._leases:
            self._renew = asyncio.create_task(self._keep_leases(stop or (lambda reason: None)))

    async def _keep_leases(self, stop: StopRun) -> None:
        """Renew every Lease; stop the run when one is lost: another holder took it, or it
        could not be renewed for so long that it would expire and let another run in."""
        loop = asyncio.get_running_loop()
        renewed = {ns: loop.time() for ns in self._leases}
        wait = LEASE_RENEW_EVERY
        while True:
            await asyncio.sleep(wait)
            client = await self.client()
            wait = LEASE_RENEW_EVERY
            for ns in list(self._leases):
                try:
                    await client.renew_lease(ns, LEASE_NAME, self._run_id)
                    renewed[ns] = loop.time()
                except LeaseHeld as exc:
                    stop(f"the run lost its Lease {ns}/{LEASE_NAME}: {exc.message}; another "
                         "runner may be injecting there now")
                    return
                except ChaosError as exc:
                    since = loop.time() - renewed[ns]
                    if since + LEASE_RETRY_EVERY >= LEASE_SECONDS:
                        stop(f"the run could not renew its Lease {ns}/{LEASE_NAME} for "
                             f"{since:.0f}s ({exc.message}); it would expire and let another "
                             "run inject")
                        return
                    wait = LEASE_RETRY_EVERY

    async def _release_leases(self) -> None:
        if self._renew is not None:
            self._renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renew
            self._renew = None
        client = self._client
        for ns in self._leases:
            if client is not None:
                with contextlib.suppress(ChaosError):
                    await client.release_lease(ns, LEASE_NAME, self._run_id)
        self._leases.clear()

    async def finish(self, status: str, message: str) -> None:
        """An Event on every workload the run touched: aborted, interrupted, or finished."""
        if self._client is None:
            return
        reason = {"aborted": "ChaosExperimentAborted",
                  "interrupted": "ChaosExperimentInterrupted"}.get(status,
                                                                   "ChaosExperimentFinished")
        kind = "Warning" if status in ("aborted", "interrupted", "error") else "Normal"
        seen: set[tuple[str, str]] = set()
        for pod in self._touched.values():
            owner = _owner_kind_name(pod) or ("Pod", pod.name)
            if (pod.namespace, f"{owner[0]}/{owner[1]}") in seen:
                continue
            seen.add((pod.namespace, f"{owner[0]}/{owner[1]}"))
            involved = {"kind": owner[0], "name": owner[1], "namespace": pod.namespace,
                        "apiVersion": "apps/v1" if owner[0] != "Pod" else "v1"}
            with contextlib.suppress(ChaosError):
                await self._client.emit_event(
                    namespace=pod.namespace, involved=involved, reason=reason, type_=kind,
                    message=f"experiment {self._experiment.metadata.name} run {self._run_id} "
                    f"{status}: {message}"[:1000])

    def probe(self, spec: ProbeSpec) -> Probe:
        return spec.kind.driver(spec, self)

    async def run_rollback(self, spec: RollbackSpec) -> str:
        if spec.kubernetes is not None:
            scale = spec.kubernetes.scale
            ns = self.namespace(scale.namespace)
            await (await self.client()).scale(ns, scale.kind, scale.name, scale.replicas)
            return f"scaled {scale.kind} {ns}/{scale.name} to {scale.replicas}"
        return await self._need_local(f"rollback '{spec.name}'").run_rollback(spec)

    async def close(self) -> None:
        await self._release_leases()
        if self._local is not None:
            with contextlib.suppress(Exception):
                await self._local.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


__all__ = ["BASE_PERMISSIONS", "LEASE_NAME", "KubePlatform"]
