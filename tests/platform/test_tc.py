"""Netem against a real network namespace with a veth pair, created and always deleted here.

The host kernel may lack sch_netem: then ``apply`` must fail with the clear "no sch_netem" error.
Where netem exists, the same test checks that the qdisc is really there and that remove works.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from chaos.errors import InjectFailed, PermissionDenied, PlatformError, TargetNotFound
from chaos.platform.local import tc
from chaos.platform.local.tc import Netem

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and tc"),
]


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with an up veth pair ``vchaos0`` <-> ``vchaos1``."""
    name = f"chaos-t-{uuid.uuid4().hex[:8]}"
    created = _sh("ip", "netns", "add", name)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {created.stderr.strip()}")
    try:
        for argv in (
            ("ip", "-n", name, "link", "add", "vchaos0", "type", "veth", "peer", "name", "vchaos1"),
            ("ip", "-n", name, "link", "set", "vchaos0", "up"),
            ("ip", "-n", name, "link", "set", "vchaos1", "up"),
            ("ip", "-n", name, "link", "set", "lo", "up"),
        ):
            done = _sh(*argv)
            assert done.returncode == 0, done.stderr
        yield name
    finally:
        _sh("ip", "netns", "del", name)


def _root_qdisc(ns: str, dev: str) -> str:
    return _sh("ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", dev).stdout


def _kernel_has_netem(ns: str) -> bool:
    probe = _sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem")
    if probe.returncode == 0:
        _sh("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root")
        return True
    return False


def test_command_preview_is_the_exact_tc_command() -> None:
    netem = Netem("eth0", delay=0.2, jitter=0.02, correlation=25)
    assert netem.command_preview() == "tc qdisc add dev eth0 root netem delay 200ms 20ms 25%"
    assert Netem("eth0", delay=0.0005).command_preview().endswith("netem delay 0.5ms")
    in_ns = Netem("veth1", netns="blue", delay=0.1)
    assert in_ns.command_preview() == (
        "ip netns exec blue tc qdisc add dev veth1 root netem delay 100ms"
    )
    assert in_ns.revert_preview() == "ip netns exec blue tc qdisc del dev veth1 root"


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="delay"):
        Netem("eth0", delay=-1)
    with pytest.raises(ValueError, match="correlation"):
        Netem("eth0", delay=0.1, jitter=0.01, correlation=150)
    with pytest.raises(ValueError, match="interface"):
        Netem("../x", delay=0.1)


def test_preflight_passes_on_a_default_qdisc(netns: str) -> None:
    asyncio.run(Netem("vchaos0", netns=netns, delay=0.1).preflight())


def test_missing_interface_lists_the_existing_ones(netns: str) -> None:
    netem = Netem("eth9", netns=netns, delay=0.1)
    with pytest.raises(TargetNotFound, match="interface 'eth9' does not exist") as info:
        asyncio.run(netem.preflight())
    for name in ("lo", "vchaos0", "vchaos1"):
        assert name in str(info.value)


def test_missing_netns_is_target_not_found() -> None:
    netem = Netem("eth0", netns=f"chaos-t-absent-{uuid.uuid4().hex[:6]}", delay=0.1)
    with pytest.raises(TargetNotFound, match=r"network namespace .* does not exist"):
        asyncio.run(netem.preflight())


def test_refuses_to_clobber_a_configured_root_qdisc(netns: str) -> None:
    added = _sh(
        "ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", "vchaos0", "root",
        "tbf", "rate", "1mbit", "burst", "32kbit", "latency", "400ms",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    netem = Netem("vchaos0", netns=netns, delay=0.1)
    with pytest.raises(InjectFailed, match="refusing to replace the tbf root qdisc on dev vchaos0"):
        asyncio.run(netem.preflight())
    # remove() must not touch a qdisc that is not netem.
    asyncio.run(netem.remove())
    assert "tbf" in _root_qdisc(netns, "vchaos0")


def test_apply_reports_missing_netem_or_really_applies(netns: str) -> None:
    netem = Netem("vchaos0", netns=netns, delay=0.1, jitter=0.01)

    async def main() -> None:
        await netem.preflight()
        if not _kernel_has_netem(netns):
            with pytest.raises(PlatformError, match="this kernel has no sch_netem") as info:
                await netem.apply()
            assert "modprobe sch_netem" in str(info.value)
            assert "proxy latency fault" in str(info.value)
            assert await netem.root_qdisc() == "noqueue"
            return
        await netem.apply()
        shown = _root_qdisc(netns, "vchaos0")
        assert "netem" in shown
        assert "delay 100ms" in shown
        assert await netem.root_qdisc() == "netem"
        with pytest.raises(InjectFailed, match="netem root qdisc"):
            await netem.preflight()  # a second injection would clobber the first
        await netem.remove()
        assert "netem" not in _root_qdisc(netns, "vchaos0")
        await netem.remove()

    asyncio.run(main())


def test_remove_when_nothing_is_there_is_a_no_op(netns: str) -> None:
    async def main() -> None:
        await Netem("vchaos0", netns=netns, delay=0.1).remove()
        await Netem("gone0", netns=netns, delay=0.1).remove()
        await Netem("eth0", netns=f"chaos-t-absent-{uuid.uuid4().hex[:6]}", delay=0.1).remove()

    asyncio.run(main())
    assert "noqueue" in _root_qdisc(netns, "vchaos0")


def test_not_root_is_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tc, "_has_net_admin", lambda: False)
    with pytest.raises(PermissionDenied, match=r"tc netem needs root \(CAP_NET_ADMIN\)"):
        asyncio.run(Netem("lo", delay=0.1).preflight())


def test_missing_tc_is_reported_with_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PlatformError, match="`tc` is not installed") as info:
        asyncio.run(Netem("lo", delay=0.1).preflight())
    assert "apt-get install iproute2" in str(info.value)
