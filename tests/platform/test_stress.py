"""CpuBurners with real worker processes: they burn, at the lowest priority, and never linger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from chaos.platform.local import _burner, procs
from chaos.platform.local.stress import CpuBurners

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is stat field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def _gone(pid: int) -> bool:
    stat = procs._read_stat(pid)
    return stat is None or stat.state in ("Z", "X")


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.02)
    return all(_gone(p) for p in pids)


def test_burners_consume_cpu_at_lowest_priority() -> None:
    async def main() -> None:
        burners = CpuBurners(workers=1, load=1.0, deadline_s=10)
        pids = await burners.start()
        try:
            assert len(pids) == 1
            pid = pids[0]
            assert os.getpriority(os.PRIO_PROCESS, pid) == 19
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            info = procs.proc_info(pid)
            assert info is not None
            assert "chaos.platform.local._burner" in info.cmdline
            # SCHED_IDLE only gets idle CPU; on a busy machine give it a little longer.
            used = 0.0
            for _ in range(40):
                await asyncio.sleep(0.1)
                used = _cpu_seconds(pid)
                if used >= 0.3:
                    break
            assert used >= 0.3, f"burner used only {used:.2f}s CPU"
        finally:
            await burners.stop()
        assert burners.pids == []
        assert _gone(pid)
        await burners.stop()  # idempotent

    asyncio.run(main())


def test_partial_load_burns_about_that_fraction() -> None:
    async def main() -> float:
        burners = CpuBurners(workers=1, load=0.3, deadline_s=10)
        (pid,) = await burners.start()
        try:
            before, t0 = _cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(1.5)
            return (_cpu_seconds(pid) - before) / (time.monotonic() - t0)
        finally:
            await burners.stop()

    fraction = asyncio.run(main())
    # Only an upper bound: SCHED_IDLE may be starved on a busy machine, by design.
    assert fraction <= 0.45


def test_burners_exit_by_themselves_at_the_deadline() -> None:
    async def main() -> None:
        burners = CpuBurners(workers=2, load=0.2, deadline_s=1.0)
        t0 = time.monotonic()
        pids = await burners.start()
        assert len(pids) == 2
        procs_ = list(burners._procs)
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs_)), 3)
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed <= 1.6
        assert [p.returncode for p in procs_] == [0, 0]
        await burners.stop()

    asyncio.run(main())


_PARENT = """
import asyncio, sys
from chaos.platform.local.stress import CpuBurners
async def main():
    burners = CpuBurners(workers=2, load=0.5, deadline_s=30)
    pids = await burners.start()
    print(" ".join(map(str, pids)), flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
"""


def test_burners_die_with_a_sigkilled_runner() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        assert not any(_gone(p) for p in pids)
        parent.kill()
        parent.wait()
        assert _wait_gone(pids, 1.0), "burners outlived the runner"
    finally:
        parent.kill()
        parent.wait()


def test_burner_refuses_to_run_for_the_wrong_parent() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaos.platform.local._burner",
            "--load",
            "1",
            "--until",
            str(time.time() + 30),
            "--parent",
            "1",
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == b""


def test_burn_loop_stops_when_the_parent_changes() -> None:
    t0 = time.monotonic()
    assert _burner.burn(0.0, time.time() + 30, parent=os.getppid() + 1) == 0
    assert time.monotonic() - t0 < 0.2


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="workers"):
        CpuBurners(0, 0.5, 1)
    with pytest.raises(ValueError, match="load"):
        CpuBurners(1, 1.5, 1)
    with pytest.raises(ValueError, match="deadline"):
        CpuBurners(1, 0.5, 0)
