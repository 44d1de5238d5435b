"""Kubernetes faults and the Kubernetes Platform.

Targets are resolved when a fault is planned: the pods a selector matches, narrowed by its mode
(one, all, fixed N, percent) with a choice seeded by the candidates themselves, so ``chaos plan``
names the exact pods a run would touch. The blast radius is capped by ``limits.maxPods``
and ``limits.maxPercent`` before anything happens. ``prepare`` checks every permission the run
needs, for injecting *and* reverting (SelfSubjectAccessReview), and takes a Lease per target
namespace so two runs never inject into the same namespace at once.

Pods a fault acts on in place are annotated with the run id; a pod kill deletes its pods (at
most ``KILL_CONCURRENCY`` requests in flight, one request per pod) and names them in an Event
instead. Events go on the owning workload, one per workload and action, not one per pod. Every
request carries the run id in its User-Agent, so the API server's audit log attributes it.

Network latency and CPU stress run in ephemeral containers that end by
themselves after the fault's duration (the dead-man's switch); an early revert adds a second,
short ephemeral container that undoes the first (ephemeral containers cannot be removed).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from chaos import __version__
from chaos.engine.protocols import Fault, Probe
from chaos.errors import ChaosError, InjectFailed, InvalidInput, PermissionDenied, TargetNotFound
from chaos.model.experiment import (
    CpuStress,
    Experiment,
    FaultSpec,
    NetworkLatency,
    PodKill,
    PodSelector,
    ProbeSpec,
    RollbackSpec,
)
from chaos.platform.kubernetes import (
    AccessCheck,
    DisruptionBudgetBlocked,
    KubeClient,
    KubeError,
    NotFound,
    PodRef,
    rules_yaml,
)

RUN_ANNOTATION = "chaos-runner.io/run-id"
FAULT_ANNOTATION = "chaos-runner.io/fault"
LEASE_NAME = "chaos-runner"
LEASE_SECONDS = 30
LEASE_RENEW_EVERY = 10.0
#: Pod deletions (or evictions) in flight at once: a 500-pod kill takes a fraction of a second
#: instead of 500 round trips in a row, without flooding the API server.
KILL_CONCURRENCY = 16
#: Pod names listed in one Event before "and N more".
EVENT_NAMES = 20

ClientFactory = Callable[[], Awaitable[KubeClient]]


def _owner_kind_name(pod: PodRef) -> tuple[str, str] | None:
    if pod.owner and "/" in pod.owner:
        kind, name = pod.owner.split("/", 1)
        return kind, name
    return None


class _KubeFault:
    one_shot = False

    def __init__(self, spec: FaultSpec, platform: KubePlatform, pods: list[PodRef]) -> None:
        self._spec = spec
        self.platform = platform
        self.pods = pods

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    def targets(self) -> list[str]:
        return [p.describe() for p in self.pods]

    def target_keys(self) -> list[str]:
        return [f"kubernetes:{p.namespace}:pod/{p.name}" for p in self.pods]

    def revert_state(self) -> dict[str, object]:
        return {"pods": [{"namespace": p.namespace, "name": p.name, "uid": p.uid}
                         for p in self.pods]}

    async def _annotate(self, pod: PodRef) -> None:
        """Mark a pod the fault acts on in place with the run id, best effort."""
        client = await self.platform.client()
        with contextlib.suppress(KubeError):
            await client.annotate("Pod", pod.namespace, pod.name,
                                  {RUN_ANNOTATION: self.platform.run_id,
                                   FAULT_ANNOTATION: self._spec.name})

    async def _announce(self, pods: list[PodRef], what: str, done: str) -> None:
        """One Event per owning workload naming its pods (a 500-pod kill would otherwise add
        500 Events); never blocks a revert."""
        groups: dict[tuple[str, str, str], list[PodRef]] = {}
        for pod in pods:
            self.platform.touched(pod)
            owner = _owner_kind_name(pod) or ("Pod", pod.name)
            groups.setdefault((pod.namespace, *owner), []).append(pod)
        for group in groups.values():
            names = [p.name for p in group]
            shown = ", ".join(names[:EVENT_NAMES])
            if len(names) > EVENT_NAMES:
                shown += f" and {len(names) - EVENT_NAMES} more"
            await self.platform.event(
                group[0], f"chaos fault {what}",
                f"fault '{self._spec.name}' ({self._spec.kind_name}) {what} by run "
                f"{self.platform.run_id}: {done} {len(names)} pod(s): {shown}")


class PodKillFault(_KubeFault):
    def __init__(self, spec: FaultSpec, platform: KubePlatform, pods: list[PodRef],
                 params: PodKill) -> None:
        super().__init__(spec, platform, pods)
        self.params = params
        self.one_shot = params.every is None
        self._repeat: asyncio.Task[None] | None = None
        self.kills = 0

    def describe(self) -> str:
        how = "evict" if self.params.use_eviction else "delete"
        grace = (f" with grace period {self.params.grace_period:g}s"
                 if self.params.grace_period is not None else "")
        text = f"{how} {len(self.pods)} pod(s){grace}"
        if self.params.every is not None:
            text += (f", then a fresh selection ({self.params.selector.mode}) every "
                     f"{self.params.every:g}s for {self._spec.duration:g}s")
        return text

    async def _kill(self, pods: list[PodRef]) -> None:
        client = await self.platform.client()
        evict = self.params.use_eviction
        gate = asyncio.Semaphore(KILL_CONCURRENCY)

        async def kill(pod: PodRef) -> None:
            async with gate:
                if evict:
                    await client.evict_pod(pod, grace_period=self.params.grace_period)
                else:
                    await client.delete_pod(pod, grace_period=self.params.grace_period)

        # Every pod gets its request even when another one fails: the Event and the error then
        # say exactly which pods went and which did not.
        results = await asyncio.gather(*(kill(p) for p in pods), return_exceptions=True)
        killed = [p for p, r in zip(pods, results, strict=True) if r is None]
        failed = [(p, r) for p, r in zip(pods, results, strict=True) if r is not None]
        self.kills += len(killed)
        if killed:
            await self._announce(killed, "injected", "evicted" if evict else "deleted")
        for _, exc in failed:
            if not isinstance(exc, Exception):  # cancelled, or a KeyboardInterrupt
                raise exc
        blocked = [p for p, exc in failed if isinstance(exc, DisruptionBudgetBlocked)]
        if blocked:
            first = next(e for _, e in failed if isinstance(e, DisruptionBudgetBlocked))
            raise InjectFailed(
                f"eviction of {len(blocked)} of {len(pods)} pod(s) refused by a "
                f"PodDisruptionBudget ({', '.join(p.describe() for p in blocked[:5])}"
                f"{' ...' if len(blocked) > 5 else ''}): {first.message}",
                hint="the budget is doing its job; lower the mode, or drop useEviction to "
                "test what happens without it",
            ) from first
        if failed:
            exc = failed[0][1]
            if isinstance(exc, ChaosError) and killed:
                exc.message = (f"{exc.message} ({len(failed)} of {len(pods)} pod(s) not killed; "
                               f"{len(killed)} were)")
            raise exc

    async def inject(self) -> None:
        await self._kill(self.pods)
        every = self.params.every
        if every is not None:
            self._repeat = asyncio.create_task(self._again(every))

    async def _again(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                pods = await self.platform.select(self._spec.name, self.params.selector)
                await self._kill(pods)
            except ChaosError:
                continue  # nothing to kill this round; the guard watches the consequences

    async def revert(self) -> None:
        if self._repeat is not None:
            self._repeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repeat
            self._repeat = None


class EphemeralFault(_KubeFault):
    """A fault that runs in an ephemeral container per pod and expires by itself."""

    def __init__(self, spec: FaultSpec, platform: KubePlatform, pods: list[PodRef],
                 params: NetworkLatency | CpuStress) -> None:
        super().__init__(spec, platform, pods)
        self.params = params
        short = platform.run_id[:8]
        kind = "netem" if isinstance(params, NetworkLatency) else "stress"
        self.container = f"chaos-{kind}-{short}"
        self.revert_container = f"chaos-{kind}-revert-{short}"

    def revert_state(self) -> dict[str, object]:
        state = super().revert_state()
        state.update({"container": self.container, "revert_container": self.revert_container,
                      "image": self.params.image, "device": self._device()})
        return state

    def _device(self) -> str:
        return self.params.device if isinstance(self.params, NetworkLatency) else ""

    def _duration(self) -> int:
        return math.ceil(self._spec.duration or 0)

    def script(self) -> str:
        p = self.params
        seconds = self._duration()
        if isinstance(p, NetworkLatency):
            netem = f"delay {p.delay * 1000:g}ms"
            if p.jitter:
                netem += f" {p.jitter * 1000:g}ms"
                if p.correlation is not None:
                    netem += f" {p.correlation * 100:g}%"
            dev = shlex.quote(p.device)
            return (f"tc qdisc add dev {dev} root netem {netem} || exit 1; "
                    f"trap 'tc qdisc del dev {dev} root 2>/dev/null; exit 0' TERM INT; "
                    f"sleep {seconds} & wait $!; tc qdisc del dev {dev} root 2>/dev/null; exit 0")
        workers = p.workers or 1
        return (f"exec timeout -s KILL {seconds} stress-ng --cpu {workers} "
                f"--cpu-load {round(p.load * 100)} --timeout {seconds}s")

    def undo_script(self) -> str:
        if isinstance(self.params, NetworkLatency):
            return f"tc qdisc del dev {shlex.quote(self.params.device)} root 2>/dev/null; exit 0"
        return "pkill -KILL -x stress-ng; exit 0"

    def describe(self) -> str:
        p = self.params
        if isinstance(p, NetworkLatency):
            what = f"add {p.delay * 1000:g}ms latency on {p.device}"
        else:
            what = f"burn CPU ({p.workers or 1} worker(s) at {p.load * 100:g}%)"
        return (f"{what} in {len(self.pods)} pod(s) via ephemeral container {self.container} "
                f"({p.image}); ends by itself after {self._duration()}s")

    async def _container(self, pod: PodRef, name: str, script: str) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": name,
            "image": self.params.image,
            "command": ["sh", "-c", script],
            "imagePullPolicy": "IfNotPresent",
        }
        if isinstance(self.params, NetworkLatency):
            container["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
        target = self.params.container or await self.platform.first_container(pod)
        if target:
            # Share the target container's process namespace, so an undo container can reach
            # the stressor; the network namespace is the pod's anyway.
            container["targetContainerName"] = target
        return container

    async def inject(self) -> None:
        client = await self.platform.client()
        done: list[PodRef] = []
        try:
            for pod in self.pods:
                await self._annotate(pod)
                await client.add_ephemeral_container(
                    pod, await self._container(pod, self.container, self.script()))
                done.append(pod)
        finally:
            if done:
                await self._announce(done, "injected", "added an ephemeral container to")

    async def revert(self) -> None:
        client = await self.platform.client()
        errors: list[str] = []
        undone: list[PodRef] = []
        for pod in self.pods:
            existing = {c.get("name") for c in await _quiet_ephemeral(client, pod)}
            if self.container not in existing:
                continue  # never injected into this pod, or the pod is gone
            if self.revert_container in existing:
                continue
            try:
                await client.add_ephemeral_container(
                    pod, await self._container(pod, self.revert_container, self.undo_script()))
            except NotFound:
                continue
            except ChaosError as exc:
                errors.append(f"{pod.describe()}: {exc.message}")
                continue
            undone.append(pod)
        if undone:
            await self._announce(undone, "reverted", "added an undo container to")
        if errors:
            raise InjectFailed("could not add the undo container: " + "; ".join(errors),
                               hint="the fault still ends by itself after its duration")


async def _quiet_ephemeral(client: KubeClient, pod: PodRef) -> list[dict[str, Any]]:
    try:
        return await client.ephemeral_containers(pod)
    except NotFound:
        return []


class KubePlatform:
    """The Platform protocol against a Kubernetes cluster."""

    def __init__(self, experiment: Experiment, run_id: str, *, connect: ClientFactory,
                 local: Any | None = None) -> None:
        self.experiment = experiment
        self.run_id = run_id
        self._connect = connect
        self._client: KubeClient | None = None
        self._leases: list[str] = []
        self._renew: asyncio.Task[None] | None = None
        self._containers: dict[str, str | None] = {}
        self._local = local  # http/tcp/command probes and rollbacks still run from here
        self._planned: list[FaultSpec] = []
        self._touched: dict[str, PodRef] = {}

    def touched(self, pod: PodRef) -> None:
        """Remember a pod the run acted on (for the end-of-run Event)."""
        self._touched.setdefault(pod.uid or f"{pod.namespace}/{pod.name}", pod)

    @staticmethod
    def _selector(fault: FaultSpec) -> PodSelector | None:
        return fault.pod_selector or (fault.pod_kill.selector if fault.pod_kill else None)

    def fault_namespaces(self) -> list[str]:
        """The namespaces the planned faults inject into (where the run holds Leases)."""
        return sorted({self._namespace(s.namespace) for f in self._planned
                       if (s := self._selector(f)) is not None})

    async def client(self) -> KubeClient:
        if self._client is None:
            self._client = await self._connect()
            # The audit log then says which run made every request.
            self._client.set_user_agent(f"chaos-runner/{__version__} (run {self.run_id})")
        return self._client

    def _namespace(self, selector_ns: str | None) -> str:
        namespace = selector_ns or self.experiment.spec.target.namespace
        if namespace is None:  # the loader already requires one; keep mypy and people honest
            raise InvalidInput("no namespace: set spec.target.namespace")
        return namespace

    async def select(self, fault: str, selector: PodSelector) -> list[PodRef]:
        client = await self.client()
        namespace = self._namespace(selector.namespace)
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
        limits = self.experiment.spec.limits
        if limits.max_pods is not None and count > limits.max_pods:
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
        rng = random.Random(f"{self.experiment.metadata.name}/{fault}/{names}")
        return sorted(rng.sample(pods, count), key=lambda p: p.name)

    async def first_container(self, pod: PodRef) -> str | None:
        key = f"{pod.namespace}/{pod.name}"
        if key not in self._containers:
            client = await self.client()
            obj = await client.get_resource("v1", "Pod", pod.namespace, pod.name)
            containers = obj.get("spec", {}).get("containers") or [{}]
            self._containers[key] = containers[0].get("name")
        return self._containers[key]

    async def event(self, pod: PodRef, reason: str, message: str) -> None:
        """An Event on the pod's workload (or the pod); failures never stop a run."""
        client = await self.client()
        owner = _owner_kind_name(pod)
        involved = ({"kind": owner[0], "name": owner[1], "apiVersion": "apps/v1"} if owner
                    else {"kind": "Pod", "name": pod.name, "apiVersion": "v1", "uid": pod.uid})
        involved["namespace"] = pod.namespace
        with contextlib.suppress(ChaosError):
            await client.emit_event(namespace=pod.namespace, involved=involved,
                                    reason=reason.title().replace(" ", ""), message=message)

    # -- Platform protocol

    async def plan_fault(self, spec: FaultSpec) -> Fault:
        self._planned.append(spec)
        if spec.pod_kill is not None:
            pods = await self.select(spec.name, spec.pod_kill.selector)
            return PodKillFault(spec, self, pods, spec.pod_kill)
        params = spec.network_latency or spec.cpu_stress
        if params is None or params.selector is None:
            raise InvalidInput(f"fault '{spec.name}' ({spec.kind_name}) is not a Kubernetes fault")
        pods = await self.select(spec.name, params.selector)
        return EphemeralFault(spec, self, pods, params)

    def access_checks(self) -> list[AccessCheck]:
        """Every permission the run needs, for injecting and for reverting."""
        spec = self.experiment.spec
        checks: list[AccessCheck] = []
        namespaces: set[str] = set()

        def need(verb: str, resource: str, ns: str, group: str = "", sub: str = "") -> None:
            check = AccessCheck(verb, resource, ns, group, sub)
            if all((c.verb, c.resource, c.namespace, c.group, c.subresource) !=
                   (verb, resource, ns, group, sub) for c in checks):
                checks.append(check)

        for fault in self._planned:
            selector = self._selector(fault)
            if selector is None:
                continue
            ns = self._namespace(selector.namespace)
            namespaces.add(ns)
            need("list", "pods", ns)
            if selector.owner is not None and selector.owner.kind == "Deployment":
                need("list", "replicasets", ns, "apps")
            if fault.pod_kill is not None:
                if fault.pod_kill.use_eviction:
                    need("create", "pods", ns, sub="eviction")
                else:
                    need("delete", "pods", ns)
            else:
                need("get", "pods", ns)
                need("patch", "pods", ns)  # the run-id annotation (a killed pod has none)
                need("patch", "pods", ns, sub="ephemeralcontainers")
        for probe in spec.probes:
            k = probe.kubernetes
            if k is None:
                continue
            ns = self._namespace(k.namespace)
            if k.deployment is not None:
                need("get", "deployments", ns, "apps")
            if k.statefulset is not None:
                need("get", "statefulsets", ns, "apps")
            if k.pods is not None or k.restarts is not None:
                need("list", "pods", ns)
        for rollback in spec.rollbacks:
            if rollback.kubernetes is not None:
                scale = rollback.kubernetes.scale
                ns = self._namespace(scale.namespace)
                plural = "deployments" if scale.kind == "Deployment" else "statefulsets"
                need("patch", plural, ns, "apps", "scale")
        for ns in sorted(namespaces):
            for verb in ("get", "create", "update", "delete"):
                need(verb, "leases", ns, "coordination.k8s.io")
            need("create", "events", ns, "events.k8s.io")
        return checks

    async def verify(self) -> None:
        checks = self.access_checks()
        if not checks:
            return
        denied = await (await self.client()).access_review(checks)
        if denied:
            listing = "\n".join(f"  - {c.describe()}" for c in denied)
            raise PermissionDenied(
                f"the run needs permissions it does not have (nothing was touched):\n{listing}\n"
                f"rules that grant them (add to the Role bound to this identity):\n"
                f"{rules_yaml(denied)}",
                hint="see docs/kubernetes.md for the full table of what each fault needs",
            )

    async def prepare(self) -> None:
        await self.verify()
        if self._local is not None:
            await self._local.prepare()
        client = await self.client()
        namespaces = self.fault_namespaces()
        try:
            for ns in namespaces:
                await client.acquire_lease(ns, LEASE_NAME, self.run_id, LEASE_SECONDS)
                self._leases.append(ns)
        except ChaosError as exc:
            await self._release_leases()
            raise InvalidInput(f"{exc}", hint="another run is injecting into this namespace; "
                               "wait for it, or stop it (it reverts on SIGINT/SIGTERM)") from exc
        if self._leases:
            self._renew = asyncio.create_task(self._renew_leases())

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_EVERY)
            client = await self.client()
            for ns in self._leases:
                with contextlib.suppress(ChaosError):
                    await client.renew_lease(ns, LEASE_NAME, self.run_id)

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
                    await client.release_lease(ns, LEASE_NAME, self.run_id)
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
                    message=f"experiment {self.experiment.metadata.name} run {self.run_id} "
                    f"{status}: {message}"[:1000])

    def probe(self, spec: ProbeSpec) -> Probe:
        if spec.kubernetes is not None:
            from chaos.probes.kubernetes import KubernetesProbeDriver

            return KubernetesProbeDriver(spec, self.client,
                                         self._namespace(spec.kubernetes.namespace))
        if self._local is None:
            raise InvalidInput(f"probe '{spec.name}' needs the local platform")
        probe: Probe = self._local.probe(spec)
        return probe

    async def run_rollback(self, spec: RollbackSpec) -> str:
        if spec.kubernetes is not None:
            scale = spec.kubernetes.scale
            ns = self._namespace(scale.namespace)
            await (await self.client()).scale(ns, scale.kind, scale.name, scale.replicas)
            return f"scaled {scale.kind} {ns}/{scale.name} to {scale.replicas}"
        if self._local is None:
            raise InvalidInput(f"rollback '{spec.name}' needs the local platform")
        result: str = await self._local.run_rollback(spec)
        return result

    async def close(self) -> None:
        await self._release_leases()
        if self._local is not None:
            with contextlib.suppress(Exception):
                await self._local.close()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


async def undo_from_state(client: KubeClient, kind: str, state: dict[str, Any]) -> str:
    """Undo an ephemeral-container fault from what the journal recorded (for chaos recover).

    The fault's own container ends by itself after its duration; this adds the undo container
    to every recorded pod that has the fault container and no undo container yet."""
    if kind == "podKill":
        return "pod kills are one-shot (a repeating kill stopped with its run); nothing to undo"
    container = str(state.get("container", ""))
    undo_name = str(state.get("revert_container", ""))
    device = str(state.get("device") or "eth0")
    script = (f"tc qdisc del dev {shlex.quote(device)} root 2>/dev/null; exit 0"
              if kind == "networkLatency" else "pkill -KILL -x stress-ng; exit 0")
    undone = 0
    for entry in state.get("pods", []):
        ns, name = str(entry["namespace"]), str(entry["name"])
        try:
            pod = await client.get_pod(ns, name)
        except NotFound:
            continue
        if pod.uid != entry.get("uid"):
            continue  # a replacement with the same name: not ours
        names = {c.get("name") for c in await _quiet_ephemeral(client, pod)}
        if container not in names or undo_name in names:
            continue
        obj = await client.get_resource("v1", "Pod", ns, name)
        first = (obj.get("spec", {}).get("containers") or [{}])[0].get("name")
        spec: dict[str, Any] = {"name": undo_name, "image": state.get("image"),
                                "command": ["sh", "-c", script],
                                "imagePullPolicy": "IfNotPresent"}
        if kind == "networkLatency":
            spec["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
        if first:
            spec["targetContainerName"] = first
        try:
            await client.add_ephemeral_container(pod, spec)
        except NotFound:
            continue
        undone += 1
    return (f"added the undo container to {undone} pod(s)" if undone
            else "no pod still had the fault without its undo container")
