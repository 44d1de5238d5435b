"""The contract every fault kind passes, on this machine, through the real CLI and real targets.

For every scenario (tests/contract/scenarios.py):

- ``chaos plan`` touches nothing and names every target;
- a run journals the intent before the inject (write-ahead order, and a revert state the kind
  reads back), the test sees the effect on the target while the run says it is in effect, and
  sees it gone after the revert, which the run verified too;
- SIGKILL of the runner mid-fault, then ``chaos recover``: nothing is left;
- SIGKILL without recover: the fault ends by itself after its duration plus the expiry grace.

The same checks run on the test cluster (tests/k8s/test_kube_contract.py) and, for netem on an
interface, in the netem guest (tests/guest/test_netem_fault.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scenarios import COVERAGE, LOCAL_SCENARIOS, Scenario, experiment, local_scenario

from chaos.faults.registry import FAULT_KINDS, fault_kind
from chaos.journal.wal import read_records

REPO = Path(__file__).resolve().parents[2]


def test_registry_is_covered() -> None:
    """A kind registered without a contract scenario for each platform it supports fails CI."""
    registered = {(kind.key, platform) for kind in FAULT_KINDS for platform in kind.platforms}
    missing = registered - set(COVERAGE)
    assert not missing, f"fault kinds with no contract scenario: {sorted(missing)}"
    assert set(COVERAGE) <= registered, "COVERAGE names a kind or platform the registry lacks"
    local = {s for (_, platform), ids in COVERAGE.items() if platform == "local" for s in ids
             if "(" not in s}
    assert local == set(LOCAL_SCENARIOS)


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp / "xdg"), "PYTHONUNBUFFERED": "1"}


def _chaos(tmp: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *args], capture_output=True,
                          text=True, timeout=timeout, env=_env(tmp), cwd=REPO)


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _wal(state: Path) -> list[dict[str, Any]]:
    runs = sorted((state / "runs").glob("*.jsonl"))
    return read_records(runs[0]) if runs else []


def _types(state: Path) -> list[str]:
    return [str(r["type"]) for r in _wal(state) if r.get("fault") == "f"]


def _start(tmp: Path, exp: Path, state: Path, scenario: Scenario) -> subprocess.Popen[str]:
    runner = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", str(exp), "--state-dir", str(state),
         "--journal", str(tmp / "run.json"), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp), cwd=REPO)
    scenario.runners.append(runner.pid)
    return runner


@pytest.fixture(params=LOCAL_SCENARIOS)
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with local_scenario(request.param, tmp_path) as built:
        yield built


def _write(tmp: Path, scenario: Scenario, **kw: str) -> Path:
    path = tmp / "exp.yaml"
    path.write_text(experiment(scenario, **kw))
    return path


def test_plan_touches_nothing_and_names_every_target(scenario: Scenario, tmp_path: Path) -> None:
    exp = _write(tmp_path, scenario)
    result = _chaos(tmp_path, "plan", str(exp))
    assert result.returncode == 0, result.stderr
    assert "nothing was touched" in result.stdout
    for name in scenario.plan_names:
        assert name in result.stdout, result.stdout
    assert f"[{scenario.kind}]" in result.stdout
    assert not scenario.effect()
    assert not (tmp_path / "xdg" / "chaos" / "runs").exists(), "a plan writes no journal"


def test_intent_first_effect_seen_then_gone(scenario: Scenario, tmp_path: Path) -> None:
    exp = _write(tmp_path, scenario)
    state = tmp_path / "state"
    runner = _start(tmp_path, exp, state, scenario)
    try:
        if not scenario.one_shot:
            # The test's own look at the target, while the run says the fault is in effect.
            _wait("the run to see the effect", lambda: "verified" in _types(state), 30)
            assert scenario.effect(), "the run said in effect, the target does not show it"
        _, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, err[-3000:]
    record = json.loads((tmp_path / "run.json").read_text())
    fault = record["faults"][0]
    assert fault["kind"] == scenario.kind
    assert fault["verified_at"] and fault["effect"] and fault["not_in_effect"] is None
    assert fault["effect_seconds"] is not None and fault["effect_seconds"] < 10
    types = _types(state)
    assert types[0] == "intent", types  # written before anything was touched
    if scenario.one_shot:
        assert types == ["intent", "done", "verified"], types
        assert scenario.effect()
    else:
        assert types == ["intent", "applied", "verified", "reverted"], types
        assert fault["revert_verified"] and fault["reverted_at"]
        assert not scenario.effect(), "the effect is still on the target after the revert"
    # The revert state the journal holds is the kind's typed state, readable back.
    kind = fault_kind(scenario.kind)
    assert kind is not None
    for entry in _wal(state):
        if entry.get("fault") == "f" and "revert_state" in entry:
            kind.load_state(entry["revert_state"])
    assert scenario.leftovers() == []


@pytest.mark.parametrize("recover", [True, False], ids=["then-recover", "expiry"])
def test_sigkill_mid_fault_leaves_nothing(scenario: Scenario, tmp_path: Path,
                                          recover: bool) -> None:
    grace = 1.0
    duration = 3.0
    exp = _write(tmp_path, scenario, duration=f"{duration:g}s", grace=f"{grace:g}s")
    state = tmp_path / "state"
    runner = _start(tmp_path, exp, state, scenario)
    try:
        marker = "done" if scenario.one_shot else "verified"
        _wait("the fault to be in effect", lambda: marker in _types(state), 30)
        killed_at = time.monotonic()
        if not scenario.one_shot:
            assert scenario.effect()
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    if recover:
        result = _chaos(tmp_path, "recover", "--state-dir", str(state))
        assert result.returncode == 0, result.stdout + result.stderr
        if not scenario.one_shot:
            assert not scenario.effect(), "chaos recover left the effect on the target"
    # The dead-man's switch: gone by itself at duration + grace after the inject.
    elif not scenario.one_shot:
        _wait("the fault to end by itself", lambda: not scenario.effect(),
              duration + grace + 10)
        assert time.monotonic() - killed_at <= duration + grace + 10
    _wait("no leftovers", lambda: scenario.leftovers() == [], 15)
