"""CPU stress on the local machine, with workers that can never outlive the runner.

:class:`CpuBurners` starts ``workers`` processes of :mod:`chaos.platform.local._burner`. Each burns
``load`` of every 100 ms slice at the lowest priority (nice 19, SCHED_IDLE), dies with the runner
(PR_SET_PDEATHSIG, plus a parent check every slice), and exits by itself at the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from chaos.errors import InjectFailed

__all__ = ["CpuBurners"]

_READY_TIMEOUT_S = 10.0


class CpuBurners:
    """``workers`` burners at ``load`` (0..1) each; they exit by themselves after ``deadline_s``."""

    def __init__(self, workers: int, load: float, deadline_s: float) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not 0.0 <= load <= 1.0:
            raise ValueError(f"load must be between 0 and 1, got {load}")
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self.workers = workers
        self.load = load
        self.deadline_s = deadline_s
        self._procs: list[asyncio.subprocess.Process] = []

    def argv(self, until: float) -> list[str]:
        """The command line of one worker (also useful for plans)."""
        return [
            sys.executable,
            "-m",
            "chaos.platform.local._burner",
            "--load",
            f"{self.load:g}",
            "--until",
            f"{until:.3f}",
            "--parent",
            str(os.getpid()),
        ]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    async def start(self) -> list[int]:
        """Start the workers and return once every one of them reports that it is burning."""
        if self._procs:
            return self.pids
        argv = self.argv(time.time() + self.deadline_s)
        try:
            for _ in range(self.workers):
                self._procs.append(
                    await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                    )
                )
            await asyncio.gather(*(self._wait_ready(p) for p in self._procs))
        except BaseException:
            await self.stop()
            raise
        return self.pids

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                line = await proc.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() == b"ready":
            return
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        detail = (await proc.stderr.read()).decode("utf-8", "replace").strip()
        raise InjectFailed(
            f"CPU burner pid {proc.pid} did not start (exit code {proc.returncode}); "
            "no CPU stress is running",
            hint=detail.splitlines()[-1]
            if detail
            else "run it by hand: " + " ".join(self.argv(time.time() + 5)),
        )

    async def stop(self) -> None:
        """SIGKILL every worker and reap it; safe to call more than once."""
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in procs:
            await proc.wait()
