"""TCP probe: a sample is ok when a connection to host:port opens within the timeout."""

# No ``from __future__ import annotations``: pydantic reads the models' annotations.
import time
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from chaos.model._units import Duration
from chaos.model.common import Strict
from chaos.probes.contract import ProbeContext, ProbeKind

if TYPE_CHECKING:
    from chaos.engine.protocols import Outcome, Probe
    from chaos.model.experiment import ProbeSpec


class TcpProbe(Strict):
    host: str
    port: int = Field(ge=1, le=65535)
    timeout: Duration = 2.0


class TcpProbeKind(ProbeKind[TcpProbe]):
    key: ClassVar[str] = "tcp"
    params: ClassVar[type[Strict]] = TcpProbe
    summary: ClassVar[str] = "open a TCP connection; ok when it opens within the timeout"

    def describe(self, params: TcpProbe) -> str:
        return f"connect {params.host}:{params.port}"

    def driver(self, spec: "ProbeSpec", ctx: ProbeContext) -> "Probe":
        return TcpProbeDriver(spec)


KIND = TcpProbeKind()


class TcpProbeDriver:
    def __init__(self, spec: "ProbeSpec") -> None:
        self._spec = spec
        self._tcp = KIND.typed(spec)

    @property
    def spec(self) -> "ProbeSpec":
        return self._spec

    async def sample(self) -> "Outcome":
        import asyncio
        import contextlib

        from chaos.engine.protocols import Outcome

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._tcp.timeout):
                _, writer = await asyncio.open_connection(self._tcp.host, self._tcp.port)
        except TimeoutError:
            return Outcome(False, time.perf_counter() - started,
                           f"connect timed out after {self._tcp.timeout:g}s")
        except ConnectionRefusedError:
            return Outcome(False, time.perf_counter() - started, "connection refused")
        except OSError as exc:
            return Outcome(False, time.perf_counter() - started,
                           f"cannot connect: {exc.strerror or exc}")
        latency = time.perf_counter() - started
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Outcome(True, latency, "connected")
