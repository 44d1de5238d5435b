"""Kubernetes probes: workload availability, ready pods, resource conditions, restarts.

A sample is ok when the observed value meets the probe's comparison; an API error is a failed
sample whose detail says what failed (it never raises), so SLOs treat an unreachable API server
like any other failing probe.
"""

# No ``from __future__ import annotations``: pydantic reads the models' annotations.
import time
from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from chaos.faults.contract import Permission, PlatformName
from chaos.model._units import Duration, NumberThreshold
from chaos.model.common import Strict, exactly_one
from chaos.probes.contract import ProbeContext, ProbeKind
from chaos.units import Threshold, threshold_parser

if TYPE_CHECKING:
    from chaos.engine.protocols import Outcome, Probe
    from chaos.model.experiment import ProbeSpec

_CHECKS = ("deployment", "statefulset", "pods", "resource", "restarts")


class WorkloadCheck(Strict):
    """Available replicas of a Deployment or StatefulSet: a comparison, or ``== desired``."""

    name: str
    available: str = Field(default="== desired", description="'== desired' or e.g. '>= 2'")

    @field_validator("available")
    @classmethod
    def _comparison(cls, value: str) -> str:
        if value.replace(" ", "") not in ("==desired", "desired"):
            threshold_parser("number")(value)
        return value

    def threshold(self, desired: int) -> Threshold:
        if self.available.replace(" ", "") in ("==desired", "desired"):
            return Threshold("==", float(desired), f"== desired ({desired})")
        return threshold_parser("number")(self.available)


class PodsCheck(Strict):
    selector: dict[str, str] = Field(min_length=1, description="labels of the pods")
    ready: NumberThreshold


class ConditionCheck(Strict):
    type: str
    status: str = "True"


class ResourceCheck(Strict):
    api_version: str
    kind: str
    name: str
    condition: ConditionCheck


class RestartsCheck(Strict):
    selector: dict[str, str] = Field(min_length=1)
    max: int = Field(default=0, ge=0, description="restarts allowed across the selected pods")


class KubernetesProbe(Strict):
    namespace: str | None = Field(default=None, description="default: spec.target.namespace")
    deployment: WorkloadCheck | None = None
    statefulset: WorkloadCheck | None = None
    pods: PodsCheck | None = None
    resource: ResourceCheck | None = None
    restarts: RestartsCheck | None = None
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _one_check(self) -> Self:
        exactly_one(self, _CHECKS, "a kubernetes probe")
        return self

    @property
    def check(self) -> str:
        return next(name for name in _CHECKS if getattr(self, name) is not None)


class KubernetesProbeKind(ProbeKind[KubernetesProbe]):
    key: ClassVar[str] = "kubernetes"
    params: ClassVar[type[Strict]] = KubernetesProbe
    summary: ClassVar[str] = ("workload availability, ready pods, restarts or any resource "
                              "condition, read from the API")
    needs_platform: ClassVar[PlatformName | None] = "kubernetes"

    def describe(self, params: KubernetesProbe) -> str:
        return f"{params.check} in {params.namespace or 'the target namespace'}"

    def namespace(self, params: KubernetesProbe) -> str | None:
        return params.namespace

    def permissions(self, params: KubernetesProbe) -> list[Permission]:
        if params.deployment is not None:
            return [Permission("get", "deployments", "apps")]
        if params.statefulset is not None:
            return [Permission("get", "statefulsets", "apps")]
        if params.pods is not None or params.restarts is not None:
            return [Permission("list", "pods")]
        return []  # a resource condition: whatever the Role grants on that kind

    def driver(self, spec: "ProbeSpec", ctx: ProbeContext) -> "Probe":
        params = self.typed(spec)
        return KubernetesProbeDriver(spec, ctx, ctx.namespace(params.namespace))


KIND = KubernetesProbeKind()


class KubernetesProbeDriver:
    def __init__(self, spec: "ProbeSpec", ctx: ProbeContext, namespace: str) -> None:
        self._spec = spec
        self._k = KIND.typed(spec)
        self._ctx = ctx
        self._namespace = namespace

    @property
    def spec(self) -> "ProbeSpec":
        return self._spec

    async def sample(self) -> "Outcome":
        import asyncio

        from chaos.engine.protocols import Outcome
        from chaos.errors import ChaosError

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._k.timeout):
                ok, detail = await self._check()
        except TimeoutError:
            return Outcome(False, time.perf_counter() - started,
                           f"the API did not answer within {self._k.timeout:g}s")
        except ChaosError as exc:
            return Outcome(False, time.perf_counter() - started, exc.message)
        return Outcome(ok, time.perf_counter() - started, detail)

    async def _check(self) -> tuple[bool, str]:
        client = await self._ctx.kube_client()
        k, ns = self._k, self._namespace
        if k.deployment is not None or k.statefulset is not None:
            check = k.deployment or k.statefulset
            assert check is not None
            status = await (client.get_deployment(ns, check.name) if k.deployment
                            else client.get_statefulset(ns, check.name))
            threshold = check.threshold(status.replicas)
            return (threshold.holds(status.available),
                    f"{status.available}/{status.replicas} available (want {threshold})")
        if k.pods is not None:
            pods = await client.list_pods(ns, labels=k.pods.selector)
            ready = sum(1 for p in pods if p.ready and not p.terminating)
            return k.pods.ready.holds(ready), f"{ready} ready pod(s) (want {k.pods.ready})"
        if k.restarts is not None:
            pods = await client.list_pods(ns, labels=k.restarts.selector)
            restarts = sum(p.restarts for p in pods)
            return (restarts <= k.restarts.max,
                    f"{restarts} restart(s) across {len(pods)} pod(s) (max {k.restarts.max})")
        assert k.resource is not None
        r = k.resource
        obj = await client.get_resource(r.api_version, r.kind, ns, r.name)
        for cond in obj.get("status", {}).get("conditions") or []:
            if cond.get("type") == r.condition.type:
                seen = str(cond.get("status"))
                return (seen == r.condition.status,
                        f"{r.kind}/{r.name} {r.condition.type}={seen} "
                        f"(want {r.condition.status})")
        return False, f"{r.kind}/{r.name} has no condition {r.condition.type}"
