"""procs: finding and signalling real child processes through /proc."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chaos.errors import InvalidInput, TargetNotFound
from chaos.platform.local import procs


def _wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A child running `python3 -c ...` with a unique marker in its command line."""
    marker = f"chaos-sleeper-{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(60)", marker],
    )
    assert _wait_until(lambda: marker in procs._read_cmdline(child.pid))
    yield child, marker
    child.kill()
    child.wait()


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A child python process listening on a random TCP port (reported on stdout)."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_INET6)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
        "s.bind(('::', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None
    port = int(child.stdout.readline())
    yield child, port
    child.kill()
    child.wait()


def test_proc_info_reads_this_process() -> None:
    me = procs.proc_info(os.getpid())
    assert me is not None
    assert me.ppid == os.getppid()
    assert me.start_ticks > 0
    assert "python" in me.comm or "pytest" in me.comm
    assert me.describe().startswith(f"pid {os.getpid()} (")


def test_proc_info_of_missing_pid_is_none() -> None:
    assert procs.proc_info(2**22 + 12345) is None


def test_describe_truncates_long_command_lines() -> None:
    info = procs.ProcInfo(1234, 1, "python3", "python3 " + "x" * 200, 1)
    text = info.describe()
    assert text.startswith("pid 1234 (python3 xxx")
    assert text.endswith("...)")
    assert len(text) < 100
    assert procs.ProcInfo(7, 2, "kworker/0:1", "", 1).describe() == "pid 7 ([kworker/0:1])"


def test_find_by_name_finds_the_child(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    child, marker = sleeper
    found = procs.find_by_name(marker)
    assert [p.pid for p in found] == [child.pid]
    assert found[0].ppid == os.getpid()
    assert found[0].describe().startswith(f"pid {child.pid} (")
    assert marker in found[0].cmdline


def test_find_by_name_excludes_the_runner_and_its_ancestors() -> None:
    pids = {p.pid for p in procs.find_by_name(r"pytest|python")}
    assert os.getpid() not in pids
    assert os.getppid() not in pids


def test_find_by_name_excludes_runner_helpers_but_not_plain_children(
    sleeper: tuple[subprocess.Popen[bytes], str],
) -> None:
    _, marker = sleeper
    helper = subprocess.Popen(
        [sys.executable, "-m", "chaos.platform.local.procs", marker],
        stdout=subprocess.DEVNULL,
    )
    try:
        found = procs.find_by_name(marker)
        assert helper.pid not in {p.pid for p in found}
        assert len(found) == 1
    finally:
        helper.kill()
        helper.wait()


def test_find_by_name_skips_zombies() -> None:
    marker = f"chaos-zombie-{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen([sys.executable, "-c", "pass", marker])
    # Not reaped yet: once it exits it is a zombie with an empty cmdline and comm "python3".
    assert _wait_until(lambda: getattr(procs._read_stat(child.pid), "state", "Z") == "Z")
    try:
        assert child.pid not in {p.pid for p in procs.find_by_name(r".")}
    finally:
        child.wait()


def test_find_by_name_skips_kernel_threads() -> None:
    found = procs.find_by_name(r"kthreadd|ksoftirqd|kworker")
    assert all(p.cmdline for p in found), found


def test_find_by_name_rejects_a_broken_pattern() -> None:
    with pytest.raises(InvalidInput, match="not a valid regular expression"):
        procs.find_by_name("python(")


def test_find_by_port_ipv6_dual_stack(listener: tuple[subprocess.Popen[bytes], int]) -> None:
    child, port = listener
    found = procs.find_by_port(port)
    assert [p.pid for p in found] == [child.pid]


def test_find_by_port_ipv4() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert [p.pid for p in procs.find_by_port(port)] == [os.getpid()]
    assert procs.find_by_port(port) == []


def test_find_by_port_ignores_connected_sockets() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            pass
    # A port we only had a connection on, not a listener: nothing found.
    assert procs.find_by_port(port) == []
    with pytest.raises(InvalidInput, match="out of range"):
        procs.find_by_port(70000)


def test_read_pidfile(tmp_path: Path) -> None:
    good = tmp_path / "good.pid"
    good.write_text("4321\n")
    assert procs.read_pidfile(str(good)) == 4321

    with pytest.raises(TargetNotFound, match=r"missing\.pid does not exist"):
        procs.read_pidfile(str(tmp_path / "missing.pid"))

    empty = tmp_path / "empty.pid"
    empty.write_text("  \n")
    with pytest.raises(TargetNotFound, match="is empty"):
        procs.read_pidfile(str(empty))

    garbage = tmp_path / "garbage.pid"
    garbage.write_text("hello\n")
    with pytest.raises(TargetNotFound, match="does not contain a pid"):
        procs.read_pidfile(str(garbage))

    zero = tmp_path / "zero.pid"
    zero.write_text("0")
    with pytest.raises(TargetNotFound, match="does not contain a pid"):
        procs.read_pidfile(str(zero))

    with pytest.raises(TargetNotFound, match="is a directory"):
        procs.read_pidfile(str(tmp_path))


def test_sigstop_sigcont_and_is_stopped(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    child, _ = sleeper
    info = procs.proc_info(child.pid)
    assert info is not None
    assert not procs.is_stopped(child.pid)
    procs.send_signal(info, signal.SIGSTOP)
    assert _wait_until(lambda: procs.is_stopped(child.pid))
    procs.send_signal(info, signal.SIGCONT)
    assert _wait_until(lambda: not procs.is_stopped(child.pid))
    assert procs.alive(info)


def test_send_signal_refuses_a_reused_pid(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    child, _ = sleeper
    info = procs.proc_info(child.pid)
    assert info is not None
    stale = dataclasses.replace(info, start_ticks=info.start_ticks - 1, cmdline="old service")
    assert not procs.alive(stale)
    with pytest.raises(TargetNotFound, match=rf"pid {child.pid} was reused"):
        procs.send_signal(stale, signal.SIGKILL)
    assert procs.alive(info)  # the real process was not touched


def test_send_signal_to_an_exited_process(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    child, _ = sleeper
    info = procs.proc_info(child.pid)
    assert info is not None
    procs.send_signal(info, signal.SIGKILL)
    child.wait()
    assert not procs.alive(info)
    with pytest.raises(TargetNotFound, match="has exited"):
        procs.send_signal(info, signal.SIGTERM)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_permission_denied_is_translated(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    child, _ = sleeper
    # A process running as nobody tries to signal our root-owned child.
    code = (
        "import os, signal, sys\n"
        "from chaos.errors import PermissionDenied\n"
        "from chaos.platform.local import procs\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "info = procs.proc_info(int(sys.argv[1]))\n"
        "try:\n"
        "    procs.send_signal(info, signal.SIGTERM)\n"
        "except PermissionDenied as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(child.pid)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert f"not allowed to send SIGTERM to pid {child.pid}" in result.stdout
    assert "hint:" in result.stdout
    assert child.poll() is None
