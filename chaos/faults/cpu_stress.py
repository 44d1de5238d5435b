"""``cpuStress``: burn CPU, on this machine or in pods.

- Local: lowest-priority burner processes (nice 19, SCHED_IDLE) that die with the runner and
  exit by themselves at their deadline. In effect when every burner is running and has used
  CPU time since it started; reverted when none is left.
- Kubernetes (``selector``): stress-ng in a helper container per pod, in the target container's
  process namespace, as a non-root user with no capabilities (admitted by the ``restricted`` Pod
  Security level). stress-ng stops at the fault's deadline by itself; the script also kills it
  a grace period later should it hang, and reports its workers running in its log.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from chaos.errors import FaultNotInEffect, RevertFailed, TargetNotFound
from chaos.faults.contract import (
    HELPER_PERMISSIONS,
    FaultKind,
    HelperFault,
    HelperState,
    KubeContext,
    LocalContext,
    Permission,
    PlannedFault,
    PlatformName,
    PodNeeds,
    ProcessesState,
    RecoverContext,
    Seen,
    observe_until,
)
from chaos.model._units import Percent
from chaos.model.common import DEFAULT_HELPER_IMAGE, PodSelector, Strict

if TYPE_CHECKING:
    from chaos.faults._ephemeral import Helper, HelperPlan
    from chaos.model.experiment import FaultSpec
    from chaos.platform.kubernetes import PodRef
    from chaos.platform.local.procs import ProcInfo
    from chaos.platform.local.stress import CpuBurners

_BURNER_MODULE = "chaos.platform.local._burner"


class CpuStress(Strict):
    workers: int | None = Field(default=None, ge=1, le=256, description="default: one per core")
    load: Percent = 1.0
    selector: PodSelector | None = Field(
        default=None, description="kubernetes: pods to stress (a helper container)"
    )
    container: str | None = None
    image: str = DEFAULT_HELPER_IMAGE

    @model_validator(mode="after")
    def _some_load(self) -> Self:
        if self.load <= 0:
            raise ValueError("load must be above 0%: a stress that burns nothing cannot be "
                             "verified")
        return self


class BurnerState(ProcessesState):
    version: Literal[1] = 1
    variant: Literal["local"] = "local"


class PodStressState(HelperState):
    pass


StressState = Annotated[BurnerState | PodStressState, Field(discriminator="variant")]


# ------------------------------------------------------------------------------ local burners


def _burners_of(pids: list[int], ticks: list[int]) -> list[ProcInfo]:
    """The burners among these pids that are still the same process."""
    from chaos.platform.local import procs

    found: list[ProcInfo] = []
    for pid, start in zip(pids, ticks, strict=True):
        info = procs.proc_info(pid)
        if info is not None and info.start_ticks == start and _BURNER_MODULE in info.cmdline:
            found.append(info)
    return found


def _kill_burners(pids: list[int], ticks: list[int]) -> int:
    """SIGKILL what is left of the burners; the recovery routine (the run's own revert reaps
    its children through :class:`CpuBurners`)."""
    from chaos.platform.local import procs

    killed = 0
    for info in _burners_of(pids, ticks):
        try:
            procs.send_signal(info, signal.SIGKILL)
            killed += 1
        except TargetNotFound:
            continue
    return killed


class LocalStressFault(PlannedFault[BurnerState]):
    def __init__(self, spec: FaultSpec, params: CpuStress, ctx: LocalContext) -> None:
        super().__init__(spec)
        self.workers = params.workers or (os.cpu_count() or 1)
        self.load = params.load
        self.ctx = ctx
        self.burners: CpuBurners | None = None
        self._started: list[ProcInfo] = []

    def targets(self) -> list[str]:
        return [f"this machine: {self.workers} worker(s) at {self.load * 100:g}% of a core each"]

    def describe(self) -> str:
        return (f"burn CPU with {self.workers} lowest-priority worker(s) for "
                f"{self.spec.duration:g}s")

    def target_keys(self) -> list[str]:
        return ["local:cpu"]

    def state(self) -> BurnerState:
        return BurnerState(pids=[p.pid for p in self._started],
                           start_ticks=[p.start_ticks for p in self._started])

    async def inject(self) -> None:
        from chaos.platform.local import procs
        from chaos.platform.local.stress import CpuBurners

        expiry = (self.spec.duration or 0) + self.ctx.limits.expiry_grace
        self.burners = CpuBurners(self.workers, self.load, expiry)
        pids = await self.burners.start()
        self._started = [info for pid in pids if (info := procs.proc_info(pid)) is not None]

    async def verify(self, within: float) -> str:
        from chaos.platform.local import procs

        first = {p.pid: procs.cpu_ticks(p) for p in self._started}
        if len(self._started) < self.workers:
            raise FaultNotInEffect(f"only {len(self._started)} of {self.workers} CPU burners "
                                   "started")

        async def look() -> Seen:
            idle: list[int] = []
            for info in self._started:
                now = procs.cpu_ticks(info)
                if now is None:
                    raise FaultNotInEffect(f"CPU burner {info.describe()} exited early")
                start = first.get(info.pid)
                if start is None or now <= start:
                    idle.append(info.pid)
            if idle:
                return Seen(False, f"burner(s) {', '.join(map(str, idle))} have used no CPU yet "
                            "(they run at the lowest priority: the machine may be saturated)")
            return Seen(True, f"{len(self._started)} burner(s) running and using CPU")

        return await observe_until(within, look, what="the CPU stress", interval=0.1)

    async def revert(self) -> None:
        if self.burners is not None:
            await self.burners.stop()

    async def verify_reverted(self, within: float) -> str:
        pids = [p.pid for p in self._started]
        ticks = [p.start_ticks for p in self._started]

        async def look() -> Seen:
            left = _burners_of(pids, ticks)
            if left:
                return Seen(False, f"{len(left)} burner(s) still running")
            return Seen(True, "no burner is left")

        return await observe_until(within, look, what="the end of the burners",
                                   failure=RevertFailed)


# ---------------------------------------------------------------------------- in pods, stress-ng

#: The ``restricted`` Pod Security level admits this: non-root, no capabilities, no privilege
#: escalation, the runtime's default seccomp profile. The undo container runs as the same user,
#: so it may signal the fault script.
STRESS_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
STRESS_NEEDS = PodNeeds("restricted", False, "stress-ng runs as a non-root user with no "
                        "capabilities")
STRESS_CAUSES: dict[str, tuple[str, str | None]] = {
    "no-stress-ng": ("the helper image has no stress-ng",
                     "build the image from docker/helper.Dockerfile"),
    "stress-failed": ("stress-ng failed", "see the helper container's log (kubectl logs -c)"),
    "not-observed": ("stress-ng did not start its workers", None),
}


def pod_script(workers: int, load: float, grace: float) -> str:
    """The fault script (after the prelude, which defines DEADLINE, START_BY, say and fail).
    The backstop kills a hung stress-ng ``grace`` (at least 10 s) after the deadline."""
    percent = max(1, min(100, round(load * 100)))
    return f"""workers={workers}
command -v stress-ng >/dev/null 2>&1 || fail no-stress-ng "stress-ng is not in the image"
left=$((DEADLINE - $(date +%s)))
[ "$left" -gt 0 ] || {{ say "reverted: deadline already passed: nothing started"; exit 0; }}
stressor=
backstop=
stopped=0
stop() {{
  [ "$stopped" = 1 ] && return 0
  stopped=1
  if [ -n "$stressor" ]; then
    kill -TERM "$stressor" 2>/dev/null
    wait "$stressor" 2>/dev/null
  fi
  [ -n "$backstop" ] && kill "$backstop" 2>/dev/null
  say "reverted: $1: stress-ng stopped"
}}
trap 'stop "asked to stop"; exit 0' TERM INT HUP
# stress-ng refuses to start without a writable temp path (default: the cwd, / in an image
# without WORKDIR, which the non-root user cannot write).
stress-ng --temp-path "${{TMPDIR:-/tmp}}" --cpu "$workers" --cpu-load {percent} \
  --timeout "${{left}}s" &
stressor=$!
# Should stress-ng hang past its own timeout, it is killed a grace period later. Stopped (by
# the script, or by the undo's pkill, which matches this subshell too), it takes its sleep along.
(trap 'kill "$!" 2>/dev/null; exit 0' TERM; sleep $((left + {max(10, round(grace))})) & wait "$!"
 kill -KILL "$stressor" 2>/dev/null) &
backstop=$!
i=0
while :; do
  n=$(pgrep -c -P "$stressor" 2>/dev/null) || n=0
  [ "$n" -ge "$workers" ] && break
  if ! kill -0 "$stressor" 2>/dev/null; then
    wait "$stressor"
    rc=$?
    stressor=
    stop "not started"
    fail stress-failed "stress-ng exited with code $rc before its workers started"
  fi
  i=$((i + 1))
  if [ "$i" -ge 100 ]; then
    stop "not observed"
    fail not-observed "stress-ng started $n of $workers workers within 10s"
  fi
  sleep 0.1
done
say "in-effect: stress-ng (pid $stressor) runs $n CPU worker(s) at {percent}% until $DEADLINE"
wait "$stressor"
rc=$?
[ "$stopped" = 1 ] && exit 0
kill "$backstop" 2>/dev/null
if [ "$rc" = 0 ]; then
  say "reverted: deadline reached: stress-ng finished"
  exit 0
fi
if [ "$(date +%s)" -ge "$DEADLINE" ]; then
  # Past the deadline the fault is over whatever the code (the backstop, a slow exit).
  say "reverted: deadline reached: stress-ng ended (code $rc)"
  exit 0
fi
fail stress-failed "stress-ng exited with code $rc before its deadline"
"""


def helper_plan(image: str, workers: int, load: float, grace: float) -> HelperPlan:
    from chaos.faults._ephemeral import HelperPlan

    return HelperPlan(image=image, script=pod_script(workers, load, grace), belt="",
                      security=STRESS_SECURITY, undo_security=STRESS_SECURITY,
                      needs=STRESS_NEEDS, causes=STRESS_CAUSES)


class PodStressFault(HelperFault[PodStressState]):
    def __init__(self, spec: FaultSpec, params: CpuStress, ctx: KubeContext, helper: Helper,
                 refs: dict[str, PodRef]) -> None:
        super().__init__(spec, ctx, helper, refs)
        self.params = params

    def describe(self) -> str:
        p = self.params
        return (f"burn CPU ({p.workers or 1} worker(s) at {p.load * 100:g}%) in "
                f"{len(self.refs)} pod(s) via helper container {self.helper.container} "
                f"({p.image}); ends by itself after {self.spec.duration:g}s")

    def state(self) -> PodStressState:
        return PodStressState(**self.helper.state.model_dump())


# ------------------------------------------------------------------------------------- the kind


class CpuStressKind(FaultKind[CpuStress, Any]):
    key: ClassVar[str] = "cpuStress"
    params: ClassVar[type[Strict]] = CpuStress
    platforms: ClassVar[frozenset[PlatformName]] = frozenset({"local", "kubernetes"})
    summary: ClassVar[str] = ("burn CPU: lowest-priority local burners, or stress-ng in pods "
                              "(helper container)")
    chart_variants: ClassVar[dict[str, dict[str, Any]]] = {
        "cpuStress": {"selector": {"labels": {"app": "x"}}},
    }

    def platform_of(self, params: CpuStress) -> PlatformName:
        return "kubernetes" if params.selector is not None else "local"

    def pod_selector(self, params: CpuStress) -> PodSelector | None:
        return params.selector

    async def plan_local(self, spec: FaultSpec, ctx: LocalContext) -> LocalStressFault:
        return LocalStressFault(spec, self.typed(spec), ctx)

    async def plan_kubernetes(self, spec: FaultSpec, ctx: KubeContext) -> PodStressFault:
        from chaos.faults._ephemeral import helper_for, target_containers

        params = self.typed(spec)
        assert params.selector is not None
        pods = await ctx.select(spec.name, params.selector)
        targets = await target_containers(await ctx.client(), pods, params.container)
        plan = helper_plan(params.image, params.workers or 1, params.load,
                           ctx.experiment.spec.limits.expiry_grace)
        helper = helper_for(ctx, spec, pods, targets, plan)
        return PodStressFault(spec, params, ctx, helper, {p.uid: p for p in pods})

    def permissions(self, params: CpuStress) -> list[Permission]:
        return list(HELPER_PERMISSIONS) if params.selector is not None else []

    def pod_needs(self, params: CpuStress) -> PodNeeds | None:
        return STRESS_NEEDS if params.selector is not None else None

    def state_model(self) -> Any:
        return StressState

    async def recover(self, state: Any, ctx: RecoverContext) -> str:
        if isinstance(state, BurnerState):
            killed = _kill_burners(state.pids, state.start_ticks)
            return f"stopped {killed} CPU burner(s)" if killed else "no CPU burner was left"
        from chaos.faults._ephemeral import need_image, recover_helper

        assert isinstance(state, PodStressState)
        plan = helper_plan(need_image(ctx), 1, 1.0, 0)
        return await recover_helper(state, plan, await ctx.client())

    def manual_undo(self, state: Any) -> list[str]:
        if isinstance(state, BurnerState):
            return [f"kill -KILL {' '.join(map(str, state.pids))}" if state.pids
                    else f"pkill -KILL -f {_BURNER_MODULE}"]
        from chaos.faults._ephemeral import manual_steps

        assert isinstance(state, PodStressState)
        return manual_steps(state, f"pkill -TERM -f 'chaos-fault[-]{state.container}$'")


KIND = CpuStressKind()
