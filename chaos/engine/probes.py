"""Probe scheduling: one task per probe, sampling on its interval from the baseline until the
end of the recovery check, each sample handed to the run at once.

A sample that overruns its interval skips the ticks it overran (keeping the phase), and the lag
of every sample against its schedule is kept: a starved machine shows there first.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from chaos.engine.faults import describe_exc
from chaos.engine.protocols import Outcome
from chaos.objectives import percentile

if TYPE_CHECKING:
    from chaos.engine.protocols import Probe

OnSample = Callable[[str, Outcome], None]


class ProbeRunner:
    def __init__(self, on_sample: OnSample, *, grace: float) -> None:
        self.on_sample = on_sample
        self.grace = grace  # a probe gets its own timeout plus this before it is cut off
        self.lags: dict[str, list[float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self, probe: Probe) -> None:
        self.lags.setdefault(probe.spec.name, [])
        self._tasks.append(asyncio.create_task(self._loop(probe), name=probe.spec.name))

    async def _loop(self, probe: Probe) -> None:
        loop = asyncio.get_running_loop()
        spec = probe.spec
        interval = spec.interval
        cutoff = spec.timeout + self.grace
        lags = self.lags[spec.name]
        next_tick = loop.time()
        # Checked as well as cancelled: on Python 3.11 a cancel that lands as an await completes
        # can be lost inside library code, and a loop that never ends hangs the run's exit.
        while not self._stopping:
            lags.append(loop.time() - next_tick)
            started = loop.time()
            try:
                async with asyncio.timeout(cutoff):
                    outcome = await probe.sample()
            except TimeoutError:
                outcome = Outcome(False, loop.time() - started,
                                  f"probe did not answer within {cutoff:g}s")
            except Exception as exc:
                outcome = Outcome(False, None, f"probe error: {describe_exc(exc)}")
            self.on_sample(spec.name, outcome)
            next_tick += interval
            now = loop.time()
            if next_tick < now:  # a slow sample: skip the ticks it overran, keep the phase
                next_tick += math.ceil((now - next_tick) / interval) * interval
            await asyncio.sleep(next_tick - now)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        while tasks:
            for task in tasks:
                task.cancel()
            # A lost cancel is repeated rather than waited on forever.
            done, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in done:  # retrieve outcomes, so none is reported as never retrieved
                if not task.cancelled():
                    task.exception()
            tasks = list(pending)
        self._tasks.clear()

    def lag_summary(self) -> dict[str, dict[str, float]]:
        return {name: _lag_summary(lags) for name, lags in self.lags.items() if lags}


def _lag_summary(lags: list[float]) -> dict[str, float]:
    late = [max(0.0, lag) for lag in lags]
    return {"n": len(late), "p50": round(percentile(late, 50), 6),
            "p99": round(percentile(late, 99), 6), "max": round(max(late), 6)}


__all__ = ["ProbeRunner"]
