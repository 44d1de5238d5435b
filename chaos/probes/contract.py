"""The contract every probe kind fulfils.

A probe kind is one module (``chaos/probes/<kind>.py``) with one :class:`ProbeKind` subclass,
listed once in :mod:`chaos.probes.registry`. It owns its parameter model (the YAML key), its
timeout, the line ``chaos plan`` prints for it, the Kubernetes permissions it needs, checks of
the environment it reads (credentials) and the driver that takes samples. Kind modules import
only light modules at the top (they are loaded to validate an experiment); httpx and the
Kubernetes client are imported inside the driver.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from chaos.faults.contract import Permission, PlatformName

if TYPE_CHECKING:
    import httpx

    from chaos.engine.protocols import Probe
    from chaos.model.common import Strict
    from chaos.model.experiment import ProbeSpec
    from chaos.platform.kubernetes import KubeClient

P = TypeVar("P", bound="Strict")


class ProbeContext(Protocol):
    """What a probe driver gets from the run's platform."""

    def http_client(self, *, verify: bool = True) -> httpx.AsyncClient:
        """The run's shared client (``verify``), or a client of the probe's own that the
        platform closes at the end of the run."""
        ...

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the run's platform closes (a driver's own resources)."""
        ...

    async def kube_client(self) -> KubeClient: ...

    def namespace(self, ns: str | None) -> str: ...


class ProbeKind(abc.ABC, Generic[P]):
    key: ClassVar[str]
    params: ClassVar[type[Strict]]
    summary: ClassVar[str]
    #: The target platform a probe of this kind needs (None: it runs from any).
    needs_platform: ClassVar[PlatformName | None] = None

    def typed(self, spec: ProbeSpec) -> P:
        params = spec.params
        if not isinstance(params, self.params):
            raise TypeError(f"probe '{spec.name}' is not a {self.key} probe")
        return params  # type: ignore[return-value]

    def timeout(self, params: P) -> float:
        return float(getattr(params, "timeout"))  # noqa: B009 - every kind has one

    @abc.abstractmethod
    def describe(self, params: P) -> str:
        """What one sample does, for ``chaos plan``."""

    @abc.abstractmethod
    def driver(self, spec: ProbeSpec, ctx: ProbeContext) -> Probe: ...

    def namespace(self, params: P) -> str | None:
        """The namespace a Kubernetes probe reads (None: the target's)."""
        return None

    def permissions(self, params: P) -> list[Permission]:
        return []

    def check_env(self, name: str, params: P, environ: Mapping[str, str]) -> list[str]:
        """Problems with what the probe reads from the environment (a missing token): an input
        problem found before the run, not a failing sample."""
        return []


__all__ = ["ProbeContext", "ProbeKind"]
