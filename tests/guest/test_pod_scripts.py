"""The Kubernetes networkLatency helper scripts, exactly as generated, against a real kernel netem.

The host kernel has no sch_netem. So pod_scripts_scenario.py runs inside the user-mode Linux guest
(tests/guest/guest.py), in one boot. In a network namespace with a veth end named eth0 (the
"pod"), it runs the fault script (``sh -c SCRIPT chaos-fault-<container>``, root with NET_ADMIN
only) and the undo script. It also checks the qdisc with ``tc -j`` and times TCP connects across
eth0. Each test here judges one of its cases.
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
DELAY_MS = 150  # pod_scripts_scenario.DELAY_MS
FAST_MS = 50  # a connect without the delay (the guest's timers are noisy)


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    reason = g.guest_available()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"netem guest unavailable in CI: {reason}")
        pytest.skip(f"!!! NETEM GUEST UNAVAILABLE: {reason} (run tests/guest/setup.sh) !!!")
    result = g.run_in_guest(
        [sys.executable, str(Path(__file__).with_name("pod_scripts_scenario.py"))],
        timeout=240, cwd=str(REPO))
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"rc={result.returncode}\n{result.output[-4000:]}"
    data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    data["guest"] = {"boot_s": result.boot_seconds, "command_s": result.command_seconds}
    return data


def case(scenario: dict[str, Any], name: str) -> dict[str, Any]:
    data: dict[str, Any] = scenario["cases"][name]
    assert "error" not in data, data["error"] + "\n" + json.dumps(data.get("scripts"), indent=1)
    return data


def is_netem(qdisc: dict[str, Any] | None, handle: str) -> bool:
    return qdisc is not None and qdisc["kind"] == "netem" and qdisc["handle"] == f"{handle}:"


def no_netem(qdisc: dict[str, Any] | None) -> bool:
    return qdisc is not None and qdisc["kind"] != "netem"


def test_injects_the_netem_and_removes_it_at_its_deadline(scenario: dict[str, Any]) -> None:
    c = case(scenario, "inject_expire")
    h = c["handle"]
    assert no_netem(c["qdisc_before"]), c["qdisc_before"]
    # injection: the in-effect line quotes tc, and tc shows our netem with the delay
    assert c["in_effect"].startswith(f"qdisc netem {h}: root "), c["in_effect"]
    assert f"delay {DELAY_MS}ms" in c["in_effect"]
    q = c["qdisc_during"]
    assert is_netem(q, h) and q["root"], q
    assert q["options"]["delay"]["delay"] == pytest.approx(DELAY_MS / 1000)
    # real traffic: the SYN-ACK leaves the pod through eth0 and waits the delay
    added = c["connect_ms_during"] - c["connect_ms_before"]
    assert DELAY_MS * 0.95 <= added <= DELAY_MS + 60, c
    # self-expiry: removed at the deadline, exit 0
    s = c["script"]
    assert c["rc"] == 0, s["output"]
    assert s["lines"] == [["in-effect", c["in_effect"]],
                          ["reverted", f"deadline reached: removed netem {h}: from eth0"]]
    assert c["deadline"] <= s["ended_at"] < c["deadline"] + 2, (c["deadline"], s["ended_at"])
    assert no_netem(c["qdisc_after"]), c["qdisc_after"]
    assert c["connect_ms_after"] < FAST_MS


def test_early_undo_stops_the_script_which_removes_its_netem(scenario: dict[str, Any]) -> None:
    c = case(scenario, "early_undo")
    h = c["handle"]
    assert is_netem(c["qdisc_during"], h)
    assert c["undo"]["rc"] == 0, c["undo"]["output"]
    assert c["undo"]["lines"] == [["undone", "the fault helper stopped"]]
    assert c["undo_s"] < 5
    assert c["rc"] == 0, c["script"]["output"]
    assert c["script"]["lines"][-1] == ["reverted", f"asked to stop: removed netem {h}: from eth0"]
    assert no_netem(c["qdisc_after"]), c["qdisc_after"]
    assert c["connect_ms_after"] < FAST_MS


def test_sigterm_removes_the_netem_and_exits_0(scenario: dict[str, Any]) -> None:
    c = case(scenario, "sigterm")
    h = c["handle"]
    assert is_netem(c["qdisc_during"], h)
    assert c["rc"] == 0, c["script"]["output"]
    assert c["script"]["lines"][-1] == ["reverted", f"asked to stop: removed netem {h}: from eth0"]
    assert no_netem(c["qdisc_after"]), c["qdisc_after"]


def test_second_fault_on_the_pod_is_refused_and_its_undo_spares_the_first(
        scenario: dict[str, Any]) -> None:
    c = case(scenario, "second_fault")
    first, second = c["first_handle"], c["second_handle"]
    assert first != second
    # another handle: the kernel says "NLM_F_REPLACE needed to override"
    assert c["second_rc"] == 1, c["second"]["output"]
    ((what, rest),) = c["second"]["lines"]
    assert what == "error" and rest.startswith(f"qdisc-exists: qdisc netem {first}: root"), rest
    assert is_netem(c["qdisc_after_second"], first)
    # the same handle again: "Exclusivity flag on, cannot override"; the qdisc with that handle
    # is not this script's, so it is left alone
    assert c["again_rc"] == 1, c["again"]["output"]
    ((what, rest),) = c["again"]["lines"]
    assert what == "error" and rest.startswith(f"qdisc-exists: qdisc netem {first}: root"), rest
    assert is_netem(c["qdisc_after_again"], first)
    # the second's undo: its name is a prefix of the first's, the $ keeps it off the first
    assert c["second_undo"]["rc"] == 0
    assert c["second_undo"]["lines"] == [["undone", "no fault helper was running"]]
    assert c["first_running_after_second_undo"]
    assert is_netem(c["qdisc_after_second_undo"], first)
    assert c["connect_ms_after_second_undo"] >= DELAY_MS * 0.95
    assert c["first_undo"]["lines"] == [["undone", "the fault helper stopped"]]
    assert c["first_rc"] == 0
    assert c["first"]["lines"][-1] == ["reverted", f"asked to stop: removed netem {first}: from eth0"]
    assert no_netem(c["qdisc_after"])


def test_a_later_runs_netem_survives_an_earlier_runs_removal(scenario: dict[str, Any]) -> None:
    c = case(scenario, "later_run_survives")
    earlier, later = c["earlier_handle"], c["later_handle"]
    assert c["later_in_effect"].startswith(f"qdisc netem {later}: root")
    # the earlier script's timer fires while the later qdisc is there: removal by handle misses
    assert c["earlier_rc"] == 0, c["earlier"]["output"]
    assert c["earlier"]["lines"][-1] == ["reverted",
                                         f"deadline reached: netem {earlier}: was not on eth0"]
    assert is_netem(c["qdisc_after_earlier_deadline"], later)
    # the earlier fault's undo and belt afterwards
    assert c["earlier_undo"]["rc"] == 0
    assert c["earlier_undo"]["lines"] == [["undone", "no fault helper was running"]]
    assert is_netem(c["qdisc_after_earlier_undo"], later)
    assert c["later_running"]
    assert c["later_undo"]["lines"] == [["undone", "the fault helper stopped"]]
    assert c["later_rc"] == 0
    assert no_netem(c["qdisc_after"])


def test_start_by_in_the_past_touches_nothing(scenario: dict[str, Any]) -> None:
    c = case(scenario, "late")
    assert c["rc"] == 1, c["script"]["output"]
    ((what, rest),) = c["script"]["lines"]
    assert what == "error" and rest.startswith("late: started at "), rest
    assert c["qdisc_after"] == c["qdisc_before"] and no_netem(c["qdisc_after"])


def test_missing_device_and_missing_net_admin_are_named(scenario: dict[str, Any]) -> None:
    c = case(scenario, "errors")
    assert c["no_device_rc"] == 1
    assert c["no_device"]["lines"] == [["error", 'no-device: Cannot find device "eth9"']]
    assert c["no_net_admin_rc"] == 1
    assert c["no_net_admin"]["lines"] == [
        ["error", "not-permitted: RTNETLINK answers: Operation not permitted"]]
    assert c["qdisc_after"] == c["qdisc_before"]


def test_sigkilled_script_leaves_the_netem_and_the_undo_belt_removes_it(
        scenario: dict[str, Any]) -> None:
    c = case(scenario, "sigkill")
    h = c["handle"]
    assert c["rc"] == -9
    assert is_netem(c["qdisc_after_kill"], h)
    assert c["undo"]["rc"] == 0, c["undo"]["output"]
    assert c["undo"]["lines"] == [["undone", "no fault helper was running"],
                                  ["undone", f"removed a leftover netem {h}: from eth0"]]
    assert no_netem(c["qdisc_after_undo"])
    assert c["connect_ms_after"] < FAST_MS


def test_no_case_leaves_a_script_or_a_netem(scenario: dict[str, Any]) -> None:
    for name, left in scenario["left"].items():
        assert left["scripts"] == [], (name, left)
        assert no_netem(left["qdisc"]), (name, left)
    # every case is bounded, and one boot runs them all
    assert sum(scenario["seconds"].values()) < 60, scenario["seconds"]
