"""run_argv with real programs: output, exit codes, timeouts that kill the whole group, errors."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from chaos.errors import PlatformError
from chaos.platform.local import procs
from chaos.platform.local.run import OUTPUT_LIMIT, run_argv


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = procs.proc_info(int(entry))
            if info is not None and info.ppid == pid:
                out.append(info.pid)
    return out


def _zombies_of(pid: int) -> list[int]:
    out = []
    for child in _children_of(pid):
        stat = procs._read_stat(child)
        if stat is not None and stat.state == "Z":
            out.append(child)
    return out


def test_captures_stdout_stderr_and_exit_code() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = asyncio.run(run_argv([sys.executable, "-c", code], timeout=10))
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert not result.timed_out
    assert not result.ok
    assert 0 < result.duration < 10


def test_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    result = asyncio.run(
        run_argv(["echo", "$HOME; touch pwned", "*"], timeout=5, cwd=str(tmp_path))
    )
    assert result.ok
    assert result.stdout == "$HOME; touch pwned *\n"
    assert list(tmp_path.iterdir()) == []


def test_env_extends_the_environment_and_cwd_is_used(tmp_path: Path) -> None:
    code = "import os; print(os.environ['CHAOS_T'], os.environ['PATH'] != '', os.getcwd())"
    result = asyncio.run(
        run_argv([sys.executable, "-c", code], timeout=10, env={"CHAOS_T": "x1"}, cwd=str(tmp_path))
    )
    assert result.stdout.split() == ["x1", "True", str(tmp_path)]


def test_timeout_kills_the_whole_process_group() -> None:
    marker = f"chaos-run-grandchild-{os.getpid()}-{time.monotonic_ns()}"
    # The shell starts a grandchild (with the marker in its argv) and then sleeps too.
    script = f"exec -a {marker} sleep 30 & sleep 30"
    t0 = time.monotonic()
    result = asyncio.run(run_argv(["bash", "-c", script], timeout=0.5))
    elapsed = time.monotonic() - t0
    assert result.timed_out
    assert result.returncode == -9
    assert elapsed < 2.5
    deadline = time.monotonic() + 2
    while procs.find_by_name(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert procs.find_by_name(marker) == []
    assert _zombies_of(os.getpid()) == []


def test_cancellation_kills_and_reaps() -> None:
    async def main() -> None:
        # Only the children this test starts: session fixtures (the demo service of
        # tests/prometheus) are children of pytest too, and rightly still running.
        before = set(_children_of(os.getpid()))
        task = asyncio.ensure_future(run_argv(["sleep", "30"], timeout=30))
        await asyncio.sleep(0.3)
        children = [pid for pid in _children_of(os.getpid()) if pid not in before]
        assert children
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for pid in children:
            assert procs.proc_info(pid) is None

    asyncio.run(main())


def test_output_is_truncated_to_64_kib_without_blocking_the_program() -> None:
    code = "import sys; sys.stdout.write('a' * 1_000_000); sys.stderr.write('b' * 70000)"
    result = asyncio.run(run_argv([sys.executable, "-c", code], timeout=10))
    assert result.ok
    assert result.stdout.startswith("a" * OUTPUT_LIMIT)
    assert result.stdout.endswith(f"... [{1_000_000 - OUTPUT_LIMIT} more bytes not kept]")
    assert len(result.stdout) < OUTPUT_LIMIT + 100
    assert "more bytes not kept" in result.stderr


def test_missing_program_is_a_clear_platform_error() -> None:
    with pytest.raises(
        PlatformError, match=r"command 'no-such-cmd-xyz' not found; check argv\[0\] or PATH"
    ):
        asyncio.run(run_argv(["no-such-cmd-xyz", "--help"], timeout=5))


def test_not_executable_is_a_clear_platform_error(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(PlatformError, match="is not executable"):
        asyncio.run(run_argv([str(script)], timeout=5))


def test_missing_cwd_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match=r"working directory .* does not exist"):
        asyncio.run(run_argv(["true"], timeout=5, cwd=str(tmp_path / "nope")))


def test_empty_argv_is_rejected() -> None:
    with pytest.raises(PlatformError, match="empty command"):
        asyncio.run(run_argv([], timeout=5))


def test_no_zombies_after_many_runs() -> None:
    async def main() -> None:
        results = await asyncio.gather(*(run_argv(["true"], timeout=5) for _ in range(20)))
        assert all(r.ok for r in results)

    asyncio.run(main())
    assert _zombies_of(os.getpid()) == []
