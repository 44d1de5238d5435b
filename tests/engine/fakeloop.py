"""An event loop on virtual time: when nothing is ready, time jumps to the next timer.

Engine tests run whole experiments (minutes of baseline, faults and recovery) in milliseconds
and deterministically. Only the engine's own timers exist here, no real I/O.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop_ref: list[FakeTimeLoop]) -> None:
        super().__init__()
        self._loop_ref = loop_ref

    def select(self, timeout: float | None = None) -> list[Any]:  # type: ignore[override]
        events = super().select(0)
        if not events and timeout is not None and timeout > 0:
            self._loop_ref[0].advance(timeout)
        return events


class FakeTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        ref: list[FakeTimeLoop] = []
        super().__init__(selector=_JumpingSelector(ref))
        ref.append(self)
        self._virtual = 1000.0

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        self._virtual += seconds


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = FakeTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
