"""The small protocols through which the engine drives probes, faults and rollbacks.

Drivers (chaos.probes, chaos.faults) implement them against real systems; the engine's tests
implement them with fakes. Nothing here performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chaos.model.experiment import FaultSpec, ProbeSpec, RollbackSpec


@dataclass(frozen=True)
class Outcome:
    """One probe sample: whether it met its expectation, how long it took, and why."""

    ok: bool
    latency: float | None
    detail: str


class Probe(Protocol):
    """Takes one sample of the system. Failure is an Outcome with ok=False, never an exception."""

    @property
    def spec(self) -> ProbeSpec: ...

    async def sample(self) -> Outcome: ...


class Fault(Protocol):
    """A planned fault whose targets are resolved. ``revert`` must be idempotent."""

    @property
    def spec(self) -> FaultSpec: ...

    @property
    def one_shot(self) -> bool: ...

    def targets(self) -> list[str]:
        """Exactly what this fault will touch, in words a person can check."""
        ...

    def describe(self) -> str:
        """What the fault will do, in one line."""
        ...

    def revert_state(self) -> dict[str, object]:
        """What a later `chaos recover` needs to undo this fault (pids, addresses, ...)."""
        ...

    def target_keys(self) -> list[str]:
        """Stable names of what this fault touches, for locks and crash recovery."""
        ...

    async def inject(self) -> None: ...

    async def revert(self) -> None: ...


class FaultLog(Protocol):
    """The write-ahead record of faults (chaos.journal.wal.Journal implements it).

    ``intent`` is written before a fault is applied, ``applied`` after, ``reverted`` or
    ``revert_failed`` after the revert; ``done`` closes a one-shot fault. Each call must be
    durable before it returns.
    """

    def append(self, record_type: str, /, **fields: object) -> None: ...


class Platform(Protocol):
    """Everything the engine needs from the outside world for one run."""

    async def prepare(self) -> None:
        """Start run-scoped resources (for example latency proxies) before the baseline."""
        ...

    async def plan_fault(self, spec: FaultSpec) -> Fault:
        """Resolve the fault's targets now; raise TargetNotFound if there are none."""
        ...

    def probe(self, spec: ProbeSpec) -> Probe: ...

    async def run_rollback(self, spec: RollbackSpec) -> str:
        """Run one rollback action; return a short result; raise ChaosError on failure."""
        ...

    async def finish(self, status: str, message: str) -> None:
        """The run's outcome is decided (before close): tell the platform's own audit trail
        (Kubernetes Events, say). Must not raise."""
        ...

    async def close(self) -> None:
        """Stop run-scoped resources and release clients. Must not raise."""
        ...
