"""``podKill``: delete (or evict) pods; one-shot, or again ``every`` interval for a duration.

At most ``KILL_CONCURRENCY`` requests are in flight, one per pod, and one Event per owning
workload names the pods. In effect when every killed pod's uid is gone from the API (a
replacement with the same name, as a StatefulSet makes, is another uid), within the pod's grace
period plus the verify timeout. A repeating kill stops with its run: nothing is left to undo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from chaos.errors import ChaosError, InjectFailed
from chaos.faults.contract import (
    FaultKind,
    KubeContext,
    Permission,
    PlannedFault,
    PlatformName,
    RevertState,
    Seen,
    observe_until,
)
from chaos.model._units import Duration
from chaos.model.common import PodSelector, Strict

if TYPE_CHECKING:
    import asyncio

    from chaos.model.experiment import FaultSpec
    from chaos.platform.kubernetes import PodRef

#: Pod deletions (or evictions) in flight at once: a 500-pod kill takes a fraction of a second
#: instead of 500 round trips in a row, without flooding the API server.
KILL_CONCURRENCY = 16


class PodKill(Strict):
    selector: PodSelector
    grace_period: Duration | None = Field(default=None, description="default: the pod's own")
    use_eviction: bool = Field(
        default=False, description="go through the Eviction API so PodDisruptionBudgets hold"
    )
    every: Duration | None = Field(
        default=None, description="repeat the kill at this interval for the fault's duration"
    )


class KilledPod(Strict):
    namespace: str
    name: str
    uid: str


class PodKillState(RevertState):
    version: Literal[1] = 1
    pods: list[KilledPod]


class PodKillFault(PlannedFault[PodKillState]):
    def __init__(self, spec: FaultSpec, params: PodKill, ctx: KubeContext,
                 pods: list[PodRef]) -> None:
        super().__init__(spec)
        self.params = params
        self.ctx = ctx
        self.pods = pods
        self.one_shot = params.every is None
        self._repeat: asyncio.Task[None] | None = None
        self.kills = 0
        self._graces: dict[str, float] = {}

    def targets(self) -> list[str]:
        return [p.describe() for p in self.pods]

    def target_keys(self) -> list[str]:
        return [f"kubernetes:{p.namespace}:pod/{p.name}" for p in self.pods]

    def state(self) -> PodKillState:
        return PodKillState(pods=[KilledPod(namespace=p.namespace, name=p.name, uid=p.uid)
                                  for p in self.pods])

    def describe(self) -> str:
        how = "evict" if self.params.use_eviction else "delete"
        grace = (f" with grace period {self.params.grace_period:g}s"
                 if self.params.grace_period is not None else "")
        text = f"{how} {len(self.pods)} pod(s){grace}"
        if self.params.every is not None:
            text += (f", then a fresh selection ({self.params.selector.mode}) every "
                     f"{self.params.every:g}s for {self.spec.duration:g}s")
        return text

    async def _kill(self, pods: list[PodRef]) -> None:
        import asyncio

        from chaos.platform.kubernetes import DisruptionBudgetBlocked

        client = await self.ctx.client()
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
            await self.ctx.announce(self.spec, killed, "injected",
                                    "evicted" if evict else "deleted")
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
        import asyncio

        await self._kill(self.pods)
        every = self.params.every
        if every is not None:
            self._repeat = asyncio.create_task(self._again(every))

    async def _again(self, every: float) -> None:
        import asyncio

        while True:
            await asyncio.sleep(every)
            try:
                pods = await self.ctx.select(self.spec.name, self.params.selector)
                await self._kill(pods)
            except ChaosError:
                continue  # nothing to kill this round; the guard watches the consequences

    async def verify(self, within: float) -> str:
        client = await self.ctx.client()
        selector = self.params.selector
        namespaces = sorted({p.namespace for p in self.pods})
        owner = (selector.owner.kind, selector.owner.name) if selector.owner else None
        grace = self.params.grace_period
        # A graceful deletion takes up to the pod's grace period before the uid goes.
        longest = grace if grace is not None else 30.0

        async def look() -> Seen:
            # One list per namespace, however many pods were killed (the selector's own list:
            # a pod that left the selection meanwhile counts as gone from it).
            present: dict[str, PodRef] = {}
            for ns in namespaces:
                for pod in await client.list_pods(ns, labels=selector.labels or None,
                                                  field_selector=selector.field_selector,
                                                  owner=owner):
                    present[pod.uid] = pod
            left = [present[p.uid] for p in self.pods if p.uid in present]
            if left:
                shown = ", ".join(
                    f"{p.describe()} {'terminating' if p.terminating else 'still running'}"
                    for p in left[:3])
                return Seen(False, f"{len(left)} killed pod(s) not gone yet: {shown}")
            return Seen(True, f"{len(self.pods)} pod uid(s) gone")

        return await observe_until(within + longest, look, what="the pods' deletion",
                                   interval=0.2)

    async def revert(self) -> None:
        import asyncio
        import contextlib

        if self._repeat is not None:
            self._repeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repeat
            self._repeat = None

    async def verify_reverted(self, within: float) -> str:
        return "the repeating kill stopped" if self.params.every else "one-shot"


class PodKillKind(FaultKind[PodKill, PodKillState]):
    key: ClassVar[str] = "podKill"
    params: ClassVar[type[Strict]] = PodKill
    platforms: ClassVar[frozenset[PlatformName]] = frozenset({"kubernetes"})
    summary: ClassVar[str] = "delete (or evict) pods; once, or again every interval"
    chart_variants: ClassVar[dict[str, dict[str, Any]]] = {
        "podKill": {"selector": {"labels": {"app": "x"}}},
        "podKillEviction": {"selector": {"labels": {"app": "x"}}, "useEviction": True},
    }

    def one_shot(self, params: PodKill) -> bool:
        return params.every is None

    def check(self, name: str, duration: float | None, params: PodKill) -> None:
        if params.every is not None and duration is None:
            raise ValueError(
                f"fault '{name}': podKill with 'every' repeats for a 'duration'; add one")
        super().check(name, duration, params)

    def pod_selector(self, params: PodKill) -> PodSelector | None:
        return params.selector

    async def plan_kubernetes(self, spec: FaultSpec, ctx: KubeContext) -> PodKillFault:
        params = self.typed(spec)
        return PodKillFault(spec, params, ctx, await ctx.select(spec.name, params.selector))

    def permissions(self, params: PodKill) -> list[Permission]:
        kill = (Permission("create", "pods", subresource="eviction") if params.use_eviction
                else Permission("delete", "pods"))
        return [kill]

    def state_model(self) -> type[PodKillState]:
        return PodKillState

    def manual_undo(self, state: PodKillState) -> list[str]:
        return []


KIND = PodKillKind()
