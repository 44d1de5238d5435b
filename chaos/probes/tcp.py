"""TCP probe: a sample is ok when a connection to host:port opens within the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time

from chaos.engine.protocols import Outcome
from chaos.model.experiment import ProbeSpec


class TcpProbeDriver:
    def __init__(self, spec: ProbeSpec) -> None:
        assert spec.tcp is not None
        self._spec = spec
        self._tcp = spec.tcp

    @property
    def spec(self) -> ProbeSpec:
        return self._spec

    async def sample(self) -> Outcome:
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
