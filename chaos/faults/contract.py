"""The contract every fault kind fulfils, and the base classes that make it short to write.

A fault kind is one module (``chaos/faults/<kind>.py``) with one :class:`FaultKind` subclass,
listed once in :mod:`chaos.faults.registry`. It owns, for its YAML key:

- its parameter model (a :class:`~chaos.model.common.Strict` pydantic model),
- the platforms it supports and, for given parameters, which one it acts on,
- ``plan``: resolve the targets now (``chaos plan`` names them) and return a
  :class:`PlannedFault`, which implements the engine's ``Fault`` protocol: ``inject``,
  ``verify`` (observe the effect on the target), ``revert``, ``verify_reverted``,
- a typed, versioned revert state (:class:`RevertState`) written to the journal before and after
  the inject, and read back by ``recover`` after a crash, sharing the revert routine,
- the Kubernetes permissions it needs to inject and to revert (preflight and the Helm chart),
- what its helper container needs from the target pods (Pod Security level, root),
- the manual undo steps that ``chaos recover --dry-run`` and the runbook show.

Nothing outside the kind module switches on the kind. This module is imported when an
experiment is validated, so it (and every kind module) imports only light modules at the top;
drivers (tc, /proc, the proxy, the Kubernetes client) are imported inside the methods that
use them.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chaos.errors import FaultNotInEffect, InvalidInput, RevertFailed

if TYPE_CHECKING:
    from chaos.faults._ephemeral import Helper
    from chaos.model.common import PodSelector, ProcessTarget, Strict
    from chaos.model.experiment import Experiment, FaultSpec, Limits
    from chaos.platform.kubernetes import KubeClient, PodRef
    from chaos.platform.local.procs import ProcInfo
    from chaos.platform.local.proxy import FaultProxy

PlatformName = Literal["local", "kubernetes"]
PodSecurityLevel = Literal["restricted", "baseline", "privileged"]

P = TypeVar("P", bound="Strict")
#: Kubernetes names as the journal may carry them: what is read back from disk is checked
#: before it is put into a request or a command.
_DNS = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"
S = TypeVar("S", bound="RevertState")


# --------------------------------------------------------------------------------- plain values


@dataclass(frozen=True, order=True)
class Permission:
    """One Kubernetes permission in a namespace: ``verb`` on ``group/resource[/subresource]``."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""


#: What every helper-container fault needs (chaos.faults._ephemeral): read the pods, add the
#: helper (and later the undo) container, read the helper's log to confirm the effect.
HELPER_PERMISSIONS = (
    Permission("get", "pods"),
    Permission("patch", "pods", subresource="ephemeralcontainers"),
    Permission("get", "pods", subresource="log"),
)


@dataclass(frozen=True)
class PodNeeds:
    """What a Kubernetes fault's helper container needs from the pods it is added to."""

    #: The least Pod Security level of the namespace that admits the helper container.
    pod_security: PodSecurityLevel
    #: The helper must run as uid 0 (refused on pods that declare ``runAsNonRoot: true``).
    root: bool
    #: Why, in words for the preflight message: "tc netem needs root and NET_ADMIN".
    why: str


class RevertState(BaseModel):
    """Everything needed to undo a fault without the process that injected it.

    Written to the write-ahead journal as JSON with its ``version``; read back by the kind's
    ``load_state`` with validation, so a journal from another version (or a tampered one) is
    refused with a message instead of being acted on. Subclasses pin ``version`` with a Literal.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class HelperPod(BaseModel):
    """A pod a helper-container fault was added to, and the container whose processes it
    shares (fixed at plan time, so the revert and recovery aim at the same one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    namespace: str = Field(pattern=_DNS)
    name: str = Field(pattern=_DNS)
    uid: str = Field(pattern=r"^[0-9a-fA-F-]{1,64}$")
    target: str | None = Field(default=None, pattern=_DNS)


class HelperState(RevertState):
    """The revert state of a fault that runs in helper containers (chaos.faults._ephemeral):
    kinds extend it with what their undo needs."""

    version: Literal[1] = 1
    variant: Literal["kubernetes"] = "kubernetes"
    pods: list[HelperPod]
    container: str = Field(pattern=_DNS)
    undo_container: str = Field(pattern=_DNS)
    image: str = Field(pattern=r"^[^\s;&|`$()<>'\"]+$")


class ProcessesState(RevertState):
    """Processes identified by pid *and* start time (``/proc/PID/stat`` field 22): an undo
    acts only on a process that is still the same one, never on whatever has that pid now."""

    pids: list[int] = []
    start_ticks: list[int] = []

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if len(self.pids) != len(self.start_ticks):
            raise ValueError("every pid needs its start time (pids and start_ticks differ in "
                             "length)")
        if any(p < 2 for p in self.pids) or any(t < 1 for t in self.start_ticks):
            raise ValueError("pids and start times must be positive (and never pid 1)")
        return self


class UnreadableState(InvalidInput):
    """A journal's revert state cannot be read by this version (or was altered)."""


# ------------------------------------------------------------------------- what plans run against


class LocalContext(Protocol):
    """What a local fault needs from the run while planning and running."""

    @property
    def run_id(self) -> str: ...

    @property
    def limits(self) -> Limits: ...

    def proxy(self, name: str) -> FaultProxy:
        """The run's proxy of that name (the model checked that it is declared)."""
        ...

    def processes(self, target: ProcessTarget) -> list[ProcInfo]:
        """The processes a target selects now, within ``limits.maxProcesses``; raises
        TargetNotFound when there are none."""
        ...


class KubeContext(Protocol):
    """What a Kubernetes fault needs from the run while planning and running."""

    @property
    def run_id(self) -> str: ...

    @property
    def experiment(self) -> Experiment: ...

    async def client(self) -> KubeClient: ...

    def namespace(self, selector_ns: str | None) -> str: ...

    async def select(self, fault: str, selector: PodSelector) -> list[PodRef]:
        """The pods the selector picks now, within the blast-radius limits."""
        ...

    async def announce(self, spec: FaultSpec, pods: Sequence[PodRef], what: str,
                       done: str) -> None:
        """One Event per owning workload naming the pods; never raises."""
        ...


class RecoverContext(Protocol):
    """What recovering a crashed run's fault needs: its identity and, lazily, a cluster."""

    @property
    def tag(self) -> str:
        """``run_id/fault``: how the crashed run named its watchdogs and helpers."""
        ...

    @property
    def helper_image(self) -> str | None:
        """The helper image from the configuration (``chaos recover --helper-image`` or
        ``$CHAOS_HELPER_IMAGE``); never taken from the journal."""
        ...

    async def client(self) -> KubeClient: ...


# -------------------------------------------------------------------------------- planned faults


@dataclass(frozen=True)
class Seen:
    """One look at the target: is the effect (or its absence) there, and what was observed."""

    ok: bool
    detail: str


async def observe_until(within: float, look: Callable[[], Awaitable[Seen]], *,
                        what: str, interval: float = 0.05,
                        failure: type[Exception] = FaultNotInEffect) -> str:
    """Look at the target until ``look`` sees what is expected, for at most ``within`` seconds.

    Returns what was seen. ``look`` may raise :class:`FaultNotInEffect` itself when it sees a
    definitive cause (an image that cannot be pulled); otherwise the last observation is the
    cause. ``failure`` is raised on timeout (RevertFailed when checking a revert)."""
    import asyncio

    deadline = time.monotonic() + within
    wait = interval
    while True:
        seen = await look()
        if seen.ok:
            return seen.detail
        if time.monotonic() >= deadline:
            raise failure(f"{what} was not observed within {within:g}s: {seen.detail}")
        await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        wait = min(wait * 1.5, 1.0)


class PlannedFault(abc.ABC, Generic[S]):
    """A fault whose targets are resolved; implements the engine's ``Fault`` protocol.

    ``verify`` and ``verify_reverted`` look at the target, never at what this object did:
    ``verify`` returns what it saw once the effect is there and raises FaultNotInEffect (with the
    cause in words) when it is not; ``verify_reverted`` returns once the effect is gone and
    raises RevertFailed when it stays."""

    one_shot: bool = False

    def __init__(self, spec: FaultSpec) -> None:
        self._spec = spec

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    @property
    def kind(self) -> str:
        return self._spec.kind.key

    @abc.abstractmethod
    def targets(self) -> list[str]:
        """Exactly what this fault will touch, in words a person can check."""

    @abc.abstractmethod
    def describe(self) -> str:
        """What the fault will do, in one line."""

    @abc.abstractmethod
    def target_keys(self) -> list[str]:
        """Stable names of what this fault touches, for locks and crash recovery."""

    @abc.abstractmethod
    def state(self) -> S:
        """The revert state as of now (before inject: the targets; after: everything)."""

    def revert_state(self) -> dict[str, Any]:
        return self.state().dump()

    async def preflight(self) -> None:
        """Read-only checks that need the target (root, tc, Pod Security); touches nothing."""
        return

    @abc.abstractmethod
    async def inject(self) -> None: ...

    @abc.abstractmethod
    async def verify(self, within: float) -> str: ...

    async def revert(self) -> None:
        """Undo the fault; idempotent. One-shot faults have nothing to undo."""
        return

    async def verify_reverted(self, within: float) -> str:
        return "one-shot: nothing to revert"


class HelperFault(PlannedFault[S]):
    """A Kubernetes fault that runs in helper containers (chaos.faults._ephemeral): the helper
    does the work; a kind adds its description and its state."""

    def __init__(self, spec: FaultSpec, ctx: KubeContext, helper: Helper,
                 refs: dict[str, PodRef]) -> None:
        super().__init__(spec)
        self.ctx = ctx
        self.helper = helper
        self.refs = refs

    def targets(self) -> list[str]:
        return [ref.describe() for ref in self.refs.values()]

    def target_keys(self) -> list[str]:
        return [f"kubernetes:{p.namespace}:pod/{p.name}" for p in self.refs.values()]

    async def preflight(self) -> None:
        await self.helper.preflight(await self.ctx.client(), self.refs)

    async def inject(self) -> None:
        limits = self.ctx.experiment.spec.limits
        await self.helper.add(await self.ctx.client(), self.refs, self.spec.duration or 0,
                              limits.verify_timeout)

    async def verify(self, within: float) -> str:
        return await self.helper.verify(await self.ctx.client(), self.refs, within)

    async def revert(self) -> None:
        await self.helper.undo(await self.ctx.client())

    async def verify_reverted(self, within: float) -> str:
        return await self.helper.verify_undone(await self.ctx.client(), within)


class FaultKind(abc.ABC, Generic[P, S]):
    """One fault kind; subclasses set the class attributes and implement what they support."""

    #: The YAML key, camelCase: the kind's one spelling (journal, reports, chart, docs).
    key: ClassVar[str]
    #: The parameter model for the YAML key.
    params: ClassVar[type[Strict]]
    #: The platforms some parameters of this kind act on.
    platforms: ClassVar[frozenset[PlatformName]]
    #: One line for ``chaos kinds`` and the docs.
    summary: ClassVar[str]
    #: For the Helm chart's Role: names (as listed in ``values.experiments[].faults``) mapped to
    #: example parameters whose permissions that name grants.
    chart_variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def typed(self, spec: FaultSpec) -> P:
        params = spec.params
        if not isinstance(params, self.params):
            raise TypeError(f"fault '{spec.name}' is not a {self.key} fault")
        return params  # type: ignore[return-value]

    def platform_of(self, params: P) -> PlatformName:
        """Which platform these parameters act on (the only one, unless overridden)."""
        (only,) = self.platforms
        return only

    def one_shot(self, params: P) -> bool:
        return False

    def check(self, name: str, duration: float | None, params: P) -> None:
        """Spec-level rules; raise ValueError with a message for the person editing the file."""
        if self.one_shot(params) and duration is not None:
            raise ValueError(f"fault '{name}': {self.key} is one-shot; remove 'duration'")
        if not self.one_shot(params) and duration is None:
            raise ValueError(
                f"fault '{name}': {self.key} needs a 'duration' so it always ends, for example "
                "duration: 30s"
            )

    def pod_selector(self, params: P) -> PodSelector | None:
        """The pods a Kubernetes fault selects (None for local faults)."""
        return None

    def proxy_name(self, params: P) -> str | None:
        """The run proxy a local fault acts through (None if none)."""
        return None

    async def plan_local(self, spec: FaultSpec, ctx: LocalContext) -> PlannedFault[S]:
        raise InvalidInput(f"fault '{spec.name}' ({self.key}) does not run on this machine")

    async def plan_kubernetes(self, spec: FaultSpec, ctx: KubeContext) -> PlannedFault[S]:
        raise InvalidInput(f"fault '{spec.name}' ({self.key}) does not run on Kubernetes")

    def permissions(self, params: P) -> list[Permission]:
        """Kubernetes permissions to inject and to revert, in the selector's namespace."""
        return []

    def pod_needs(self, params: P) -> PodNeeds | None:
        """What a helper container needs from the target pods (None: no helper)."""
        return None

    @abc.abstractmethod
    def state_model(self) -> type[S] | Any:
        """The revert state's type (a model or a discriminated union of models)."""

    def load_state(self, data: Mapping[str, Any]) -> S:
        """Read a journal's revert state back; UnreadableState when it does not validate."""
        from pydantic import TypeAdapter

        try:
            state: S = TypeAdapter(self.state_model()).validate_python(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UnreadableState(
                f"the journal's revert state of this {self.key} fault cannot be read by this "
                f"version of chaos ({where}: {first['msg']})",
                hint="it was written by another version, or altered; undo it by hand "
                "(runbooks/fault-left-behind.md)",
            ) from None
        return state

    async def recover(self, state: S, ctx: RecoverContext) -> str:
        """Undo the fault from its revert state alone (the run that injected it is gone);
        idempotent. Shares the revert routine of the kind's PlannedFault."""
        return "one-shot: nothing to undo"

    def manual_undo(self, state: S) -> list[str]:
        """Commands (or steps) a person runs to remove the fault by hand; empty: nothing."""
        return []


__all__ = [
    "HELPER_PERMISSIONS",
    "FaultKind",
    "HelperFault",
    "HelperPod",
    "HelperState",
    "KubeContext",
    "LocalContext",
    "Permission",
    "PlannedFault",
    "PlatformName",
    "PodNeeds",
    "PodSecurityLevel",
    "ProcessesState",
    "RecoverContext",
    "RevertFailed",
    "RevertState",
    "Seen",
    "UnreadableState",
    "observe_until",
]
