"""Tests for the netem guest harness (tests/guest/guest.py).

They prove, inside a user-mode Linux guest, that a real kernel netem qdisc
works: on lo, and on one end of a veth pair living in a network namespace.
The host kernel has no sch_netem, which is why a guest is needed at all.

Without a usable guest these tests skip loudly; with CI set they fail instead.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

# Imported by path so this works whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest as g

pytestmark = pytest.mark.netem

DELAY_MS = 50


@pytest.fixture(scope="module", autouse=True)
def _require_guest() -> None:
    reason = g.guest_available()
    if reason is None:
        return
    msg = f"netem guest unavailable: {reason}\n(run tests/guest/setup.sh as root)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, refusing to skip: {msg}", pytrace=False)
    warnings.warn(f"SKIPPING netem guest tests: {msg}", stacklevel=1)
    pytest.skip(f"!!! NETEM GUEST TESTS SKIPPED !!! {msg}")


def run_py(code: str, timeout: float = 120) -> dict[str, Any]:
    """Run Python `code` in a guest; it must print one JSON object as its last line."""
    res = g.run_in_guest(["python3", "-c", textwrap.dedent(code)], timeout=timeout)
    assert res.returncode == 0, f"rc={res.returncode}\n{res.stdout}\n{res.stderr}\n{res.console}"
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


# Guest-side helpers shared by the netem tests: a TCP echo server and a client
# that measures connect time and one echo round trip, several times.
RTT_LIB = """
import json, socket, subprocess, threading, time

def echo_server(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)

def measure(host, port, n=5):
    connects, echoes = [], []
    for _ in range(n):
        t = time.monotonic()
        c = socket.create_connection((host, port), timeout=10)
        connects.append(time.monotonic() - t)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = time.monotonic()
        c.sendall(b"ping")
        assert c.recv(64) == b"ping"
        echoes.append(time.monotonic() - t)
        c.close()
    return {"connect": connects, "echo": echoes}

def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
"""


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def test_command_status_and_streams() -> None:
    res = g.run_in_guest(["sh", "-c", "echo out; echo err >&2; pwd; exit 7"], timeout=60)
    assert res.returncode == 7
    assert res.stdout == f"out\n{g.REPO_ROOT}\n"
    assert res.stderr == "err\n"
    assert 0 < res.boot_seconds < res.total_seconds
    assert "out" in res.output
    assert "err" in res.output


def test_guest_kernel_has_only_loopback_and_private_tmp(tmp_path: Path) -> None:
    marker = tmp_path / "marker"  # under the host's /tmp
    marker.write_text("host")
    assert str(marker).startswith("/tmp/")
    script = f"""
        set -e
        uname -r
        ip -o link show | cut -d: -f2
        test ! -e {marker} && echo tmp-private
        tc qdisc add dev lo root tbf rate 1mbit burst 32kbit latency 400ms
        tc qdisc show dev lo | cut -d' ' -f2
        grep -qw sch_tbf /proc/modules && echo autoloaded
    """
    res = g.run_in_guest(["sh", "-c", script], timeout=60)
    assert res.returncode == 0, res.output + res.console
    lines = res.stdout.split()
    uml_versions = {p.name for p in g.UML_MODULES_ROOT.iterdir()}
    assert lines[0] in uml_versions  # it is the UML kernel, not the host's
    assert lines[1] == "lo"
    assert lines[2] == "tmp-private"
    assert lines[3:] == ["tbf", "autoloaded"]  # kernel module auto-loading works


def test_host_python_and_repo_importable() -> None:
    out = run_py(
        """
        import json, os, sys
        import chaos
        print(json.dumps({"chaos": chaos.__file__, "exe": sys.executable,
                          "version": list(sys.version_info[:3]),
                          "nobytecode": sys.dont_write_bytecode, "uid": os.getuid()}))
        """
    )
    assert out["chaos"] == str(g.REPO_ROOT / "chaos" / "__init__.py")
    # the same environment (a venv has both python and python3 in its bin directory)
    assert os.path.dirname(out["exe"]) == os.path.dirname(sys.executable)
    assert out["version"] == list(sys.version_info[:3])
    assert out["nobytecode"] is True
    assert out["uid"] == 0


def test_netem_delay_on_loopback() -> None:
    out = run_py(
        RTT_LIB
        + f"""
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
threading.Thread(target=echo_server, args=(srv,), daemon=True).start()
result = {{"before": measure("127.0.0.1", port)}}
sh("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "{DELAY_MS}ms")
result["qdisc"] = sh("tc", "qdisc", "show", "dev", "lo")
result["delayed"] = measure("127.0.0.1", port)
sh("tc", "qdisc", "del", "dev", "lo", "root")
result["qdisc_after"] = sh("tc", "qdisc", "show", "dev", "lo")
result["after"] = measure("127.0.0.1", port)
print(json.dumps(result))
"""
    )
    assert f"netem 8001: root refcnt 2 limit 1000 delay {DELAY_MS}ms" in out["qdisc"]
    assert "netem" not in out["qdisc_after"]
    two_way = 2 * DELAY_MS / 1000
    # Every packet waits DELAY_MS in lo's netem qdisc: SYN + SYN/ACK, ping + echo.
    assert min(out["delayed"]["connect"]) >= two_way, out
    assert min(out["delayed"]["echo"]) >= two_way, out
    assert max(out["delayed"]["echo"]) < two_way + 0.5, out
    for phase in ("before", "after"):
        assert median(out[phase]["connect"]) < 0.04, out
        assert median(out[phase]["echo"]) < 0.04, out


def test_netem_on_veth_in_network_namespace() -> None:
    ns = "chaos-netem-test"
    # TEST-NET-1 addresses on a veth pair that exists only inside the guest.
    host_ip, ns_ip, port = "192.0.2.1", "192.0.2.2", 7777
    out = run_py(
        RTT_LIB
        + f"""
import sys
sh("ip", "netns", "add", "{ns}")
sh("ip", "link", "add", "veth-root", "type", "veth", "peer", "name", "veth-ns")
sh("ip", "link", "set", "veth-ns", "netns", "{ns}")
sh("ip", "addr", "add", "{host_ip}/30", "dev", "veth-root")
sh("ip", "link", "set", "veth-root", "up")
sh("ip", "-n", "{ns}", "addr", "add", "{ns_ip}/30", "dev", "veth-ns")
sh("ip", "-n", "{ns}", "link", "set", "lo", "up")
sh("ip", "-n", "{ns}", "link", "set", "veth-ns", "up")
server_code = (
    "import socket, sys\\n"
    "exec(sys.argv[1])\\n"
    "srv = socket.create_server(({ns_ip!r}, {port}))\\n"
    "print('ready', flush=True)\\n"
    "echo_server(srv)\\n"
)
server = subprocess.Popen(
    ["ip", "netns", "exec", "{ns}", sys.executable, "-c", server_code, {RTT_LIB!r}],
    stdout=subprocess.PIPE, text=True)
assert server.stdout.readline().strip() == "ready"
result = {{"netns": sh("ip", "netns", "list"), "before": measure("{ns_ip}", {port})}}
# Apply the fault the way the product does: tc run inside the named namespace.
sh("ip", "netns", "exec", "{ns}", "tc", "qdisc", "add", "dev", "veth-ns", "root",
   "netem", "delay", "{DELAY_MS}ms")
result["qdisc"] = sh("tc", "-n", "{ns}", "qdisc", "show", "dev", "veth-ns")
result["root_qdisc"] = sh("tc", "qdisc", "show", "dev", "veth-root")
result["delayed"] = measure("{ns_ip}", {port})
sh("ip", "netns", "exec", "{ns}", "tc", "qdisc", "del", "dev", "veth-ns", "root")
result["after"] = measure("{ns_ip}", {port})
server.kill()
server.wait()
sh("ip", "link", "del", "veth-root")
sh("ip", "netns", "del", "{ns}")
result["netns_after"] = sh("ip", "netns", "list")
print(json.dumps(result))
"""
    )
    assert ns in out["netns"]
    assert f"delay {DELAY_MS}ms" in out["qdisc"]
    assert "netem" in out["qdisc"]
    assert "netem" not in out["root_qdisc"]  # the fault stays inside the namespace
    one_way = DELAY_MS / 1000
    # Only veth-ns egress (server -> client) is delayed: SYN/ACK and the echo reply.
    assert min(out["delayed"]["connect"]) >= one_way, out
    assert min(out["delayed"]["echo"]) >= one_way, out
    for phase in ("before", "after"):
        assert median(out[phase]["echo"]) < 0.025, out
    assert ns not in out["netns_after"]


def _guest_host_processes() -> set[int]:
    """Host processes belonging to some guest (UML kernel or its helpers)."""
    pids = set()
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as fh:
                if b"umid=chaos-guest-" in fh.read():
                    pids.add(int(cmdline.split("/")[2]))
        except OSError:
            pass
    return pids


def test_timeout_kills_guest_and_cleans_up() -> None:
    procs_before = _guest_host_processes()
    dirs_before = set(glob.glob("/tmp/chaos-guest-*"))
    t = time.monotonic()
    with pytest.raises(g.GuestTimeoutError, match="did not finish within 8s"):
        g.run_in_guest(["sh", "-c", "sleep 600 & sleep 600"], timeout=8)
    elapsed = time.monotonic() - t
    assert 7.5 < elapsed < 12
    assert _guest_host_processes() <= procs_before
    assert set(glob.glob("/tmp/chaos-guest-*")) <= dirs_before
    zombies = subprocess.run(
        ["ps", "-eo", "stat=,comm="], capture_output=True, text=True, check=True
    ).stdout
    assert not [z for z in zombies.splitlines() if z.startswith("Z") and "linux" in z]


def test_guest_kernel_crash_is_reported_promptly() -> None:
    procs_before = _guest_host_processes()
    t = time.monotonic()
    with pytest.raises(g.GuestError, match="without reporting a result") as info:
        g.run_in_guest(["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=60)
    assert not isinstance(info.value, g.GuestTimeoutError)
    assert time.monotonic() - t < 30
    assert "Kernel panic" in info.value.console
    assert _guest_host_processes() <= procs_before
