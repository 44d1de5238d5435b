"""The networkLatency fault with tc netem, end to end, against a real kernel netem.

The host kernel has no sch_netem, so this runs the chaos CLI inside the user-mode Linux guest
(tests/guest/guest.py), in a network namespace and veth pair the scenario creates.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest as g

pytestmark = pytest.mark.netem
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    reason = g.guest_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"netem guest unavailable in CI: {reason}")
        pytest.skip(f"!!! NETEM GUEST UNAVAILABLE: {reason} (run tests/guest/setup.sh) !!!")
    result = g.run_in_guest([sys.executable, str(Path(__file__).with_name("netem_scenario.py"))],
                            timeout=180, cwd=str(REPO))
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, result.output[-4000:]
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return data


def test_plan_shows_the_exact_tc_command(scenario: dict[str, Any]) -> None:
    assert "tc qdisc add dev vb root netem delay 100ms 5ms" in scenario["plan"]
    assert "will touch: interface vb in netns chaos-b" in scenario["plan"]


def test_netem_fault_adds_the_delay_and_is_removed(scenario: dict[str, Any]) -> None:
    assert scenario["run_exit"] == 0, scenario["run_stderr_tail"]
    assert "netem" not in scenario["qdisc_before"]
    p50 = scenario["p50_ms"]
    assert p50["baseline"] < 50
    # The SYN-ACK crosses the delayed interface once: +100ms (jitter 5ms). The guest kernel
    # runs as a user-mode process on a shared 2-core host, so its timers are noisier than the
    # host's (runs measured +100.0 to +105.9ms): 10% here; the proxy's 5% is tested on the host.
    added = p50["observing"] - p50["baseline"]
    assert abs(added - 100) <= 10.0, p50
    # the 100ms delay is gone (the guest's timers are noisy: judged against its own baseline)
    assert p50["recovering"] < p50["baseline"] + 50
    assert scenario["fault"]["injected_at"] and scenario["fault"]["reverted_at"]
    assert "netem" not in scenario["qdisc_after"]


def test_sigkilled_run_netem_is_removed_by_its_watchdog(scenario: dict[str, Any]) -> None:
    assert "netem" in scenario["qdisc_while_injected"]
    assert "netem" in scenario["qdisc_right_after_kill"]
    assert "netem" not in scenario["qdisc_after_expiry"]
    # duration 3s + grace 1s from injection; the kill came shortly after injection
    assert scenario["watchdog_removed_after_s"] < 6
    assert scenario["recover_exit"] == 0
