"""Realistic run records for the report tests, made by running the real engine on virtual time.

The orchestrator runs with the fake drivers of ``tests/engine`` (``fakes.py``) on the virtual-time
loop (``fakeloop.py``), so every record here has the shape a real run gives: phases, samples,
fault times, breaches, rollbacks.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from fakeloop import run_virtual
from fakes import FakePlatform, World

from chaos.engine.orchestrator import Orchestrator, RunOptions
from chaos.journal.record import RunRecord
from chaos.model import load_experiment_text

EXPERIMENT = """
apiVersion: chaos/v1
kind: Experiment
metadata: {name: checkout-survives-pause}
spec:
  baseline: 5s
  recovery: 5s
  probes:
    - {name: web, interval: 250ms, http: {url: "http://x/health", timeout: 1s}}
    - {name: api, interval: 500ms, http: {url: "http://x/api", timeout: 1s}}
  slos:
    - {name: avail, probe: web, successRate: ">= 90%", window: 2s}
    - {name: lat, probe: web, latencyP95: "< 300ms", window: 2s, abortAfter: 2}
    - {name: api-latency, probe: api, latencyP99: "< 200ms", window: 3s, abortAfter: 3}
  faults:
    - {name: slow, at: 2s, duration: 10s, networkLatency: {proxy: p, delay: 150ms}}
    - {name: pause, at: 3s, duration: 10s, processPause: {target: {pid: 1}}}
  proxies:
    - {name: p, listen: "127.0.0.1:1", upstream: "127.0.0.1:2"}
  rollbacks:
    - {name: restore, command: {argv: ["true"]}}
"""


def run_experiment(platform: FakePlatform, text: str = EXPERIMENT) -> RunRecord:
    exp = load_experiment_text(textwrap.dedent(text))
    orch = Orchestrator(exp, platform, RunOptions(run_id="run-42"))
    return run_virtual(orch.run())


def _latency(world: World, t: float) -> float:
    # A little wobble so the chart has a shape; 'slow' adds 120 ms.
    base = 0.02 + 0.01 * ((int(t * 4) * 7) % 5)
    return base + (0.12 if "slow" in world.active else 0.0)


RecordFactory = Callable[[], RunRecord]


@pytest.fixture
def aborted_record() -> RunRecord:
    """The guard aborts: the paused process makes the health probe fail."""
    world = World()
    return run_experiment(FakePlatform(world, health=lambda w, t: "pause" not in w.active,
                                       latency=_latency))


@pytest.fixture
def passed_record() -> RunRecord:
    return run_experiment(FakePlatform(World(), latency=_latency))


@pytest.fixture
def revert_failed_record() -> RunRecord:
    return run_experiment(FakePlatform(World(fail_revert={"slow"}), latency=_latency))


@pytest.fixture
def error_record() -> RunRecord:
    """A fault fails to inject mid-run: status error, the other fault reverted."""
    return run_experiment(FakePlatform(World(fail_inject={"pause"}), latency=_latency))


@pytest.fixture
def deviated_record() -> RunRecord:
    """Not steady at baseline: nothing injected."""
    return run_experiment(FakePlatform(World(), health=lambda w, t: False, latency=_latency))


@pytest.fixture
def preflight_failed_record() -> RunRecord:
    return run_experiment(FakePlatform(World(missing_targets={"pause"}), latency=_latency))


@pytest.fixture
def not_in_effect_record() -> RunRecord:
    """A fault is injected but its effect never shows: status error, every fault reverted."""
    text = EXPERIMENT.replace("recovery: 5s", "recovery: 5s\n  limits: {verifyTimeout: 2s}")
    return run_experiment(FakePlatform(World(no_effect={"pause"}), latency=_latency), text)


@pytest.fixture
def experiment_text() -> str:
    """The experiment the records above ran (a fixture: test modules must not import a
    conftest by name, another directory's conftest may shadow it)."""
    return EXPERIMENT
