"""The networkLatency fault with tc netem, end to end, against a real kernel netem.

The host kernel has no sch_netem, so this runs the chaos CLI inside the user-mode Linux guest
(tests/guest/guest.py), in a network namespace and veth pair the scenario creates.
"""

from __future__ import annotations

import json
import os
import re
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
    # The fault's own handle: its removal deletes this qdisc and never another one.
    assert re.search(r"tc qdisc add dev vb root handle [1-7][0-9a-f]{3}: netem delay 100ms 5ms",
                     scenario["plan"]), scenario["plan"]
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


def test_the_run_saw_its_own_qdisc_and_journaled_in_order(scenario: dict[str, Any]) -> None:
    fault = scenario["fault"]
    handle = fault["revert_state"]["handle"]
    assert fault["verified_at"] and f"tc shows netem {handle}:" in fault["effect"]
    assert fault["revert_verified"] and f"no netem {handle}:" in fault["revert_verified"]
    assert scenario["wal_types"] == ["start", "intent", "applied", "verified", "reverted", "end"]


def test_sigkilled_run_then_recover_leaves_nothing(scenario: dict[str, Any]) -> None:
    assert "netem" in scenario["qdisc_before_kill3"]
    assert scenario["recover3_exit"] == 0, scenario["recover3_stdout"]
    assert "removed netem" in scenario["recover3_stdout"]
    assert "netem" not in scenario["qdisc_after_recover3"]
    assert scenario["watchdogs_after_recover3"] == ""


def test_an_earlier_runs_watchdog_leaves_a_later_runs_qdisc(scenario: dict[str, Any]) -> None:
    assert "netem 2bbb:" in scenario["qdisc_after_old_watchdog"]
