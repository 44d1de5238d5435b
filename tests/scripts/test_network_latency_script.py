"""The networkLatency helper script on this host, whose kernel has no sch_netem: the script must
name that cause. Everything netem can do is tested in the guest (tests/guest/test_pod_scripts.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from chaos.faults import network_latency
from chaos.faults._ephemeral import HelperPlan, container_names, script_lines

pytestmark = pytest.mark.root

Runner = Callable[..., subprocess.CompletedProcess[str]]


def test_a_kernel_without_netem_is_named(
        run_in_netns: Runner, fault_argv: Callable[[HelperPlan, str, float, float], list[str]]
) -> None:
    probe = run_in_netns(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                         {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}})
    if probe.returncode == 0:
        pytest.skip("this kernel has sch_netem; the guest tests cover it")
    name, _ = container_names("5c1e7a0b9d2f4e11", "slow")
    plan = network_latency.helper_plan("helper:test", "lo", "1a2b", ["delay", "100ms"])
    now = time.time()
    res: Any = run_in_netns(fault_argv(plan, name, now + 30, now + 30), plan.security)
    assert res.returncode == 1, res.stdout + res.stderr
    assert script_lines(res.stdout) == [
        ("error", "no-netem: Error: Specified qdisc kind is unknown.")]
