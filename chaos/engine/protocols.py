"""The small protocols through which the engine drives probes, faults and rollbacks.

Drivers (the fault and probe kinds, the platforms in chaos.targets) implement them against real
systems; the engine's tests implement them with fakes. Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
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
    """A planned fault whose targets are resolved (chaos.faults.contract.PlannedFault).

    ``verify`` and ``verify_reverted`` observe the target: the first returns what it saw once the
    effect is there and raises FaultNotInEffect when it is not (within ``within`` seconds); the
    second returns once the effect is gone and raises RevertFailed when it stays. ``revert`` must
    be idempotent.
    """

    @property
    def spec(self) -> FaultSpec: ...

    @property
    def kind(self) -> str:
        """The kind's YAML key: its one spelling."""
        ...

    @property
    def one_shot(self) -> bool: ...

    def targets(self) -> list[str]:
        """Exactly what this fault will touch, in words a person can check."""
        ...

    def describe(self) -> str:
        """What the fault will do, in one line."""
        ...

    def revert_state(self) -> dict[str, Any]:
        """The typed, versioned revert state as JSON: what `chaos recover` needs."""
        ...

    def target_keys(self) -> list[str]:
        """Stable names of what this fault touches, for locks and crash recovery."""
        ...

    async def inject(self) -> None: ...

    async def verify(self, within: float) -> str: ...

    async def revert(self) -> None: ...

    async def verify_reverted(self, within: float) -> str: ...


class FaultLog(Protocol):
    """The write-ahead record of faults (chaos.journal.wal.Journal implements it).

    ``intent`` is written before a fault is applied, ``applied`` after, ``verified`` or
    ``not_in_effect`` when its effect was looked for, ``reverted`` or ``revert_failed`` after the
    revert; ``done`` closes a one-shot fault. Each call must be durable before it returns.
    """

    def append(self, record_type: str, /, **fields: object) -> None: ...


#: How a platform stops the run on its own (it lost the Lease that guards its targets).
StopRun = Callable[[str], None]


class Platform(Protocol):
    """Everything the engine needs from the outside world for one run."""

    async def plan_fault(self, spec: FaultSpec) -> Fault:
        """Resolve the fault's targets now; raise TargetNotFound if there are none."""
        ...

    async def preflight(self) -> None:
        """Read-only checks of everything planned (permissions, root, tc, Pod Security, a
        dry-run of helper containers); raise a ChaosError naming what is missing. Touches
        nothing."""
        ...

    async def prepare(self, stop: StopRun) -> None:
        """Start run-scoped resources (proxies, Leases) before the baseline. ``stop`` ends the
        run (every fault reverted) when the platform loses what guards it, e.g. its Lease."""
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
