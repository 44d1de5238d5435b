"""``processKill``: send a signal to local processes; one-shot.

In effect when every target has taken the signal: gone (it exited, for a signal whose default
action ends it and that it does not handle) or, for a signal it catches, delivered to its
handler. A target that ignores or blocks the signal means the fault did not take effect, and the
run says so instead of passing.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator

from chaos.errors import FaultNotInEffect
from chaos.faults.contract import (
    FaultKind,
    LocalContext,
    PlannedFault,
    PlatformName,
    ProcessesState,
    Seen,
    observe_until,
)
from chaos.model.common import ProcessTarget, Strict

if TYPE_CHECKING:
    from chaos.model.experiment import FaultSpec
    from chaos.platform.local.procs import ProcInfo, SignalMasks

SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGABRT")


class ProcessKill(Strict):
    target: ProcessTarget
    signal: str = Field(default="SIGKILL", description=f"one of {', '.join(SIGNALS)}")

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str) -> str:
        name = value.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name not in SIGNALS:
            raise ValueError(f"unsupported signal '{value}': use one of {', '.join(SIGNALS)}")
        return name


class KillState(ProcessesState):
    version: Literal[1] = 1


class ProcessKillFault(PlannedFault[KillState]):
    one_shot = True

    def __init__(self, spec: FaultSpec, params: ProcessKill, procs: list[ProcInfo]) -> None:
        super().__init__(spec)
        self.params = params
        self.procs = procs
        self.sig = signal.Signals[params.signal]
        self._before: dict[int, SignalMasks | None] = {}

    def targets(self) -> list[str]:
        return [p.describe() for p in self.procs]

    def describe(self) -> str:
        return f"send {self.params.signal} to {len(self.procs)} process(es)"

    def target_keys(self) -> list[str]:
        return [f"local:process:{p.pid}" for p in self.procs]

    def state(self) -> KillState:
        return KillState(pids=[p.pid for p in self.procs],
                         start_ticks=[p.start_ticks for p in self.procs])

    async def inject(self) -> None:
        from chaos.platform.local import procs

        for info in self.procs:
            # How the process treats the signal, read before it may end the process.
            self._before[info.pid] = procs.signal_masks(info)
            procs.send_signal(info, self.sig)

    async def verify(self, within: float) -> str:
        from chaos.platform.local import procs

        name = self.params.signal

        async def look() -> Seen:
            seen: list[str] = []
            for info in self.procs:
                state = procs.state_of(info)
                if state is None or state in ("Z", "X"):
                    seen.append(f"pid {info.pid} exited")
                    continue
                before = self._before.get(info.pid)
                if before is not None and before.ignores(self.sig):
                    raise FaultNotInEffect(
                        f"{info.describe()} ignores {name}, so it had no effect",
                        hint="send a signal it does not ignore (SIGKILL cannot be ignored)")
                masks = procs.signal_masks(info)
                if masks is None:
                    seen.append(f"pid {info.pid} exited")
                    continue
                if masks.blocks(self.sig) and masks.has_pending(self.sig):
                    return Seen(False, f"{info.describe()} blocks {name}: it is pending")
                if before is not None and before.catches(self.sig) and \
                        not masks.has_pending(self.sig):
                    seen.append(f"pid {info.pid} handled {name} and is still running")
                    continue
                return Seen(False, f"{info.describe()} is still running (state {state})")
            return Seen(True, "; ".join(seen))

        return await observe_until(within, look, what=f"the effect of {name}")


class ProcessKillKind(FaultKind[ProcessKill, KillState]):
    key: ClassVar[str] = "processKill"
    params: ClassVar[type[Strict]] = ProcessKill
    platforms: ClassVar[frozenset[PlatformName]] = frozenset({"local"})
    summary: ClassVar[str] = "send a signal (default SIGKILL) to local processes; one-shot"

    def one_shot(self, params: ProcessKill) -> bool:
        return True

    async def plan_local(self, spec: FaultSpec, ctx: LocalContext) -> ProcessKillFault:
        params = self.typed(spec)
        return ProcessKillFault(spec, params, ctx.processes(params.target))

    def state_model(self) -> type[KillState]:
        return KillState


KIND = ProcessKillKind()
