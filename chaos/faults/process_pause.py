"""``processPause``: SIGSTOP local processes for the fault's duration, SIGCONT on revert.

In effect when every target is in state ``T`` (stopped); reverted when none is. A detached
watchdog process, started before the first SIGSTOP, resumes them at duration plus the expiry
grace even if the runner dies; revert and ``chaos recover`` share one resume routine.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, ClassVar, Literal

from chaos.errors import ChaosError, FaultNotInEffect, PlatformError, RevertFailed, TargetNotFound
from chaos.faults.contract import (
    FaultKind,
    LocalContext,
    PlannedFault,
    PlatformName,
    ProcessesState,
    RecoverContext,
    Seen,
    observe_until,
)
from chaos.model.common import ProcessTarget, Strict

if TYPE_CHECKING:
    from chaos.model.experiment import FaultSpec
    from chaos.platform.local.procs import ProcInfo
    from chaos.platform.local.watchdog import Watchdog


class ProcessPause(Strict):
    target: ProcessTarget


class PauseState(ProcessesState):
    version: Literal[1] = 1
    watchdog_pid: int | None = None
    watchdog_start_ticks: int | None = None


def _procs_of(state: PauseState) -> list[ProcInfo]:
    from chaos.platform.local.procs import ProcInfo

    return [ProcInfo(pid, 0, "", "", ticks)
            for pid, ticks in zip(state.pids, state.start_ticks, strict=True)]


def _resume(targets: list[ProcInfo]) -> int:
    """SIGCONT every target that is still the same process; the revert and recovery routine.
    Returns how many were resumed; raises RevertFailed naming those that could not be."""
    from chaos.platform.local import procs

    resumed = 0
    errors: list[str] = []
    for info in targets:
        try:
            procs.send_signal(info, signal.SIGCONT)
            resumed += 1
        except TargetNotFound:
            continue  # gone (or pid reused): nothing left paused by us
        except ChaosError as exc:
            errors.append(f"{info.describe()}: {exc.message}")
    if errors:
        raise RevertFailed("could not resume: " + "; ".join(errors),
                           hint="resume by hand with: kill -CONT <pid>")
    return resumed


class ProcessPauseFault(PlannedFault[PauseState]):
    def __init__(self, spec: FaultSpec, procs: list[ProcInfo], ctx: LocalContext) -> None:
        super().__init__(spec)
        self.procs = procs
        self.ctx = ctx
        self.watchdog: Watchdog | None = None

    def targets(self) -> list[str]:
        return [p.describe() for p in self.procs]

    def describe(self) -> str:
        return f"pause (SIGSTOP) {len(self.procs)} process(es) for {self.spec.duration:g}s"

    def target_keys(self) -> list[str]:
        return [f"local:process:{p.pid}" for p in self.procs]

    def state(self) -> PauseState:
        wd = self.watchdog
        return PauseState(pids=[p.pid for p in self.procs],
                          start_ticks=[p.start_ticks for p in self.procs],
                          watchdog_pid=wd.pid if wd else None,
                          watchdog_start_ticks=wd.start_ticks if wd else None)

    async def inject(self) -> None:
        from chaos.platform.local import procs
        from chaos.platform.local.watchdog import spawn_watchdog

        # The watchdog exists before the first SIGSTOP, so no moment leaves a process paused
        # with nothing that will resume it.
        expiry = (self.spec.duration or 0.0) + self.ctx.limits.expiry_grace
        self.watchdog = spawn_watchdog(expiry, tag=f"{self.ctx.run_id}/{self.spec.name}",
                                       sigcont=self.procs)
        for info in self.procs:
            procs.send_signal(info, signal.SIGSTOP)

    async def verify(self, within: float) -> str:
        from chaos.platform.local import procs

        async def look() -> Seen:
            for info in self.procs:
                state = procs.state_of(info)
                if state is None or state in ("Z", "X"):
                    raise FaultNotInEffect(f"{info.describe()} exited; it cannot be paused")
                if state != "T":
                    return Seen(False, f"{info.describe()} is in state {state}, not T (stopped)")
            return Seen(True, f"{len(self.procs)} process(es) in state T (stopped)")

        return await observe_until(within, look, what="the pause")

    async def revert(self) -> None:
        _resume(self.procs)
        if self.watchdog is not None:
            self.watchdog.cancel()

    async def verify_reverted(self, within: float) -> str:
        from chaos.platform.local import procs

        async def look() -> Seen:
            for info in self.procs:
                if procs.state_of(info) == "T":
                    return Seen(False, f"{info.describe()} is still stopped (state T)")
            return Seen(True, "no target is stopped")

        return await observe_until(within, look, what="the resume", failure=RevertFailed)


class ProcessPauseKind(FaultKind[ProcessPause, PauseState]):
    key: ClassVar[str] = "processPause"
    params: ClassVar[type[Strict]] = ProcessPause
    platforms: ClassVar[frozenset[PlatformName]] = frozenset({"local"})
    summary: ClassVar[str] = "SIGSTOP local processes for the duration; SIGCONT on revert"

    async def plan_local(self, spec: FaultSpec, ctx: LocalContext) -> ProcessPauseFault:
        return ProcessPauseFault(spec, ctx.processes(self.typed(spec).target), ctx)

    def state_model(self) -> type[PauseState]:
        return PauseState

    async def recover(self, state: PauseState, ctx: RecoverContext) -> str:
        from chaos.platform.local.watchdog import cancel_tagged, cancel_watchdog

        try:
            resumed = _resume(_procs_of(state))
        except PlatformError:
            raise
        if state.watchdog_pid is not None:
            cancel_watchdog(state.watchdog_pid, state.watchdog_start_ticks or 0)
        cancel_tagged(ctx.tag)  # killed before journaling the watchdog's pid
        return f"resumed {resumed} paused process(es)" if resumed else "no paused process was left"

    def manual_undo(self, state: PauseState) -> list[str]:
        return [f"kill -CONT {' '.join(str(p) for p in state.pids)}"]


KIND = ProcessPauseKind()
