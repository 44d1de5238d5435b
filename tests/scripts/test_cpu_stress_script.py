"""The cpuStress helper script for Kubernetes pods, run for real: stress-ng in a PID namespace,
as uid 65532 with no capabilities, next to the undo script (see conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from chaos.faults import cpu_stress
from chaos.faults._ephemeral import HelperPlan, container_names

if TYPE_CHECKING:
    from conftest import PidNamespace, Proc, Script

pytestmark = pytest.mark.root

RUN = "5c1e7a0b9d2f4e11"
SECURITY = cpu_stress.STRESS_SECURITY


def plan(workers: int = 2, load: float = 0.5, grace: float = 1.0) -> HelperPlan:
    return cpu_stress.helper_plan("helper:test", workers, load, grace)


def start(ns: PidNamespace, p: HelperPlan, container: str, duration: float,
          start_by_in: float = 30.0) -> tuple[Script, int]:
    now = time.time()
    deadline = int(now + duration)
    return ns.fault(p, container, deadline, now + start_by_in), deadline


def workers_of(ns: PidNamespace, in_effect: str) -> tuple[Proc, list[Proc]]:
    """The stress-ng main process named in the in-effect line and its worker processes."""
    m = re.search(r"stress-ng \(pid (\d+)\) runs (\d+) CPU worker", in_effect)
    assert m, in_effect
    procs = ns.procs()
    main = next(p for p in procs if p.ns_pid == int(m.group(1)))
    assert main.comm == "stress-ng", main
    return main, [p for p in procs if p.ppid == main.pid]


def cpu_used(ns: PidNamespace, procs: list[Proc], seconds: float) -> list[float]:
    """CPU seconds each process used over the next `seconds`."""
    before = [ns.ticks(p.pid) for p in procs]
    time.sleep(seconds)
    after = [ns.ticks(p.pid) for p in procs]
    assert None not in before and None not in after, "a worker exited early"
    tick = os.sysconf("SC_CLK_TCK")
    return [(a - b) / tick for a, b in zip(after, before, strict=True)]  # type: ignore[operator]


def assert_nothing_left(ns: PidNamespace) -> None:
    left = ns.wait_empty(3)
    assert not left, "left behind: " + "; ".join(f"{p.comm} ({p.cmdline[:60]})" for p in left)


def test_script_is_the_one_the_runner_starts(
        fault_argv: Callable[[HelperPlan, str, float, float], list[str]]) -> None:
    """conftest.fault_argv builds what Helper.fault_container puts in the container spec."""
    from chaos.faults._ephemeral import Helper
    from chaos.faults.contract import HelperPod

    p = plan()
    name, undo = container_names(RUN, "cpu")
    helper = Helper("cpu", [], name, undo, p, deadline=1800000000.7, start_by=1800000040.2)
    spec = helper.fault_container(HelperPod(namespace="ns", name="pod", uid="0a1b2c3d", target="app"))
    assert spec["command"] == fault_argv(p, name, 1800000000.7, 1800000040.2)
    assert spec["securityContext"] == SECURITY


def test_injects_burns_and_expires_at_its_deadline(pidns: PidNamespace) -> None:
    p = plan(workers=2, load=0.5)
    name, _ = container_names(RUN, "cpu")
    script, deadline = start(pidns, p, name, duration=3)
    effect = script.wait_line("in-effect", timeout=5)
    assert "runs 2 CPU worker(s) at 50% until" in effect, effect
    main, workers = workers_of(pidns, effect)
    assert main.uid == 65532
    assert len(workers) == 2, workers
    assert all(w.comm == "stress-ng-cpu" and w.uid == 65532 for w in workers), workers
    used = cpu_used(pidns, workers, 0.8)
    assert all(u >= 0.15 for u in used), f"workers used {used} CPU-s in 0.8s (50% load each)"

    rc = script.wait(timeout=deadline - time.time() + 5)
    ended = time.time()
    # exit 0, not 137 (killed) nor 1: stress-ng ends by its own --timeout at the deadline
    assert rc == 0, script.output
    assert script.protocol()[-1] == ("reverted", "deadline reached: stress-ng finished")
    assert deadline <= ended < deadline + 2.5, (deadline, ended)
    assert "successful run completed" in script.output
    assert not pidns.named("stress-ng") and not pidns.named("stress-ng-cpu")
    assert_nothing_left(pidns)


def test_early_undo_stops_it(pidns: PidNamespace) -> None:
    p = plan(workers=1, load=0.3)
    name, _ = container_names(RUN, "cpu")
    script, _ = start(pidns, p, name, duration=30)
    script.wait_line("in-effect", timeout=5)
    assert pidns.named("stress-ng-cpu")

    t0 = time.monotonic()
    undo = pidns.undo(p, name)
    assert undo.wait(timeout=15) == 0, undo.output
    assert undo.protocol() == [("undone", "the fault helper stopped")]
    assert time.monotonic() - t0 < 5
    assert script.wait(timeout=5) == 0, script.output
    assert script.protocol()[-1] == ("reverted", "asked to stop: stress-ng stopped")
    assert not pidns.named("stress-ng") and not pidns.named("stress-ng-cpu")
    assert_nothing_left(pidns)


def test_sigterm_stops_it(pidns: PidNamespace) -> None:
    p = plan(workers=2, load=0.3)
    name, _ = container_names(RUN, "cpu")
    script, _ = start(pidns, p, name, duration=30)
    script.wait_line("in-effect", timeout=5)
    pidns_workers = pidns.named("stress-ng-cpu")
    assert len(pidns_workers) == 2

    os.kill(script.pid, signal.SIGTERM)
    assert script.wait(timeout=10) == 0, script.output
    assert script.protocol()[-1] == ("reverted", "asked to stop: stress-ng stopped")
    assert not pidns.named("stress-ng") and not pidns.named("stress-ng-cpu")
    assert_nothing_left(pidns)


def test_undo_of_one_fault_leaves_the_other_running(pidns: PidNamespace) -> None:
    # "chaos-<run>-cpu" is a prefix of "chaos-<run>-cpu-2": the undo's pattern is anchored.
    p = plan(workers=1, load=0.3)
    first, _ = container_names(RUN, "cpu")
    second, _ = container_names(RUN, "cpu-2")
    assert second.startswith(first)
    s1, _ = start(pidns, p, first, duration=30)
    s2, _ = start(pidns, p, second, duration=30)
    _, w1 = workers_of(pidns, s1.wait_line("in-effect", timeout=5))
    main2, w2 = workers_of(pidns, s2.wait_line("in-effect", timeout=5))

    undo1 = pidns.undo(p, first)
    assert undo1.wait(timeout=15) == 0, undo1.output
    assert s1.wait(timeout=5) == 0, s1.output
    assert pidns.ticks(w1[0].pid) is None
    time.sleep(0.3)
    assert s2.popen.poll() is None, s2.output
    assert [p.pid for p in pidns.named("stress-ng")] == [main2.pid]
    assert cpu_used(pidns, w2, 0.5)[0] > 0, "the second fault's worker stopped burning"

    undo2 = pidns.undo(p, second)
    assert undo2.wait(timeout=15) == 0, undo2.output
    assert undo2.protocol() == [("undone", "the fault helper stopped")]
    assert s2.wait(timeout=5) == 0, s2.output
    assert_nothing_left(pidns)


def test_undo_when_the_fault_already_ended(pidns: PidNamespace) -> None:
    p = plan(workers=1, load=0.2)
    name, _ = container_names(RUN, "cpu")
    undo = pidns.undo(p, name)
    assert undo.wait(timeout=10) == 0, undo.output
    assert undo.protocol() == [("undone", "no fault helper was running")]


def test_start_by_in_the_past_starts_nothing(pidns: PidNamespace) -> None:
    p = plan(workers=1, load=0.2)
    name, _ = container_names(RUN, "cpu")
    script, _ = start(pidns, p, name, duration=30, start_by_in=-5)
    assert script.wait(timeout=5) == 1, script.output
    (what, rest), = script.protocol()
    assert what == "error" and rest.startswith("late: started at "), rest
    assert "stress-ng" not in script.output
    assert_nothing_left(pidns)


def test_deadline_already_passed_starts_nothing(pidns: PidNamespace) -> None:
    p = plan(workers=1, load=0.2)
    name, _ = container_names(RUN, "cpu")
    script, _ = start(pidns, p, name, duration=-2)
    assert script.wait(timeout=5) == 0, script.output
    assert script.protocol() == [("reverted", "deadline already passed: nothing started")]
    assert_nothing_left(pidns)
