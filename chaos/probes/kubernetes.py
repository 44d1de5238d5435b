"""Kubernetes probes: workload availability, ready pods, resource conditions, restarts.

A sample is ok when the observed value meets the probe's comparison; an API error is a failed
sample whose detail says what failed (it never raises), so SLOs treat an unreachable API server
like any other failing probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from chaos.engine.protocols import Outcome
from chaos.errors import ChaosError
from chaos.model.experiment import KubernetesProbe, ProbeSpec
from chaos.platform.kubernetes import KubeClient


class KubernetesProbeDriver:
    def __init__(self, spec: ProbeSpec, client: Callable[[], Awaitable[KubeClient]],
                 namespace: str) -> None:
        assert spec.kubernetes is not None
        self._spec = spec
        self._k: KubernetesProbe = spec.kubernetes
        self._client = client
        self._namespace = namespace

    @property
    def spec(self) -> ProbeSpec:
        return self._spec

    async def sample(self) -> Outcome:
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
        client = await self._client()
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
