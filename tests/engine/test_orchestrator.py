"""The orchestrator on virtual time, with fake drivers: phases, abort, revert, rollbacks."""

from __future__ import annotations

import asyncio
import textwrap

import pytest
from fakeloop import run_virtual
from fakes import FakePlatform, World

from chaos.engine.orchestrator import Orchestrator, RunOptions
from chaos.engine.state import Phase
from chaos.journal.record import RunRecord, Status
from chaos.model import Experiment, load_experiment_text

BASE = """
apiVersion: chaos/v1
kind: Experiment
metadata: {name: t}
spec:
  baseline: 5s
  recovery: 5s
  probes:
    - {name: web, interval: 250ms, http: {url: "http://x/health", timeout: 1s}}
  slos:
    - {name: avail, probe: web, successRate: ">= 90%", window: 2s}
    - {name: lat, probe: web, latencyP95: "< 300ms", window: 2s, abortAfter: 2}
  faults:
    - {name: slow, at: 2s, duration: 10s, networkLatency: {proxy: p, delay: 500ms}}
    - {name: pause, at: 3s, duration: 10s, processPause: {target: {pid: 1}}}
  proxies:
    - {name: p, listen: "127.0.0.1:1", upstream: "127.0.0.1:2"}
  rollbacks:
    - {name: restore, command: {argv: ["true"]}}
"""


def experiment(text: str = BASE, **replace: str) -> Experiment:
    for old, new in replace.items():
        text = text.replace(old, new)
    return load_experiment_text(textwrap.dedent(text))


def run(exp: Experiment, platform: FakePlatform, *, interrupt_at: list[float] | None = None
        ) -> tuple[RunRecord, Orchestrator]:
    orch = Orchestrator(exp, platform, RunOptions(run_id="r1"))

    async def main() -> RunRecord:
        loop = asyncio.get_running_loop()
        for t in interrupt_at or []:
            loop.call_later(t, orch.interrupt, "SIGINT")
        return await orch.run()

    return run_virtual(main()), orch


def test_healthy_run_passes_and_walks_every_phase() -> None:
    world = World()
    record, orch = run(experiment(), FakePlatform(world))
    assert record.status is Status.PASSED
    assert record.exit_code == 0
    assert orch.state.history == [
        Phase.PREFLIGHT, Phase.BASELINE, Phase.INJECTING, Phase.OBSERVING, Phase.REVERTING,
        Phase.RECOVERING, Phase.REPORTING, Phase.DONE,
    ]
    assert world.active == set()
    assert [r.name for r in record.rollbacks] == ["restore"]
    assert all(s.verdict == "passed" for s in record.slos)
    # baseline 5s + faults end at 13s + recovery 5s
    assert record.duration == pytest.approx(23.0, abs=0.3)
    inject_slow = world.times("inject:slow")[0] - 1000
    assert inject_slow == pytest.approx(7.0, abs=0.01)
    assert world.times("revert:slow")[0] - 1000 == pytest.approx(17.0, abs=0.01)
    samples = record.probes["web"]
    assert 85 <= len(samples) <= 95  # 4 Hz over ~23 s
    assert {s.phase for s in samples} >= {"baseline", "injecting", "observing", "recovering"}


def test_breach_aborts_within_one_interval_and_reverts_in_reverse_order() -> None:
    world = World()
    platform = FakePlatform(world, health=lambda w, t: "pause" not in w.active)
    record, _ = run(experiment(), platform)
    assert record.status is Status.ABORTED
    assert record.exit_code == 3
    assert record.abort is not None and record.abort.slo == "avail"
    paused = world.times("inject:pause")[0]
    reverted = world.times("revert:pause")[0]
    # 2s window at 4 Hz: 90% breaks at the first failing sample (7/8 < 90%): one interval + latency
    assert reverted - paused <= 0.25 + 0.01 + 1e-6
    order = [w for _, w in world.log if w.startswith("revert:")]
    assert order == ["revert:pause", "revert:slow"]  # newest first
    assert world.active == set()
    assert [r.name for r in record.rollbacks] == ["restore"]
    assert record.slos[0].verdict == "breached" and record.slos[0].breach_phase == "observing"
    assert record.slos[0].samples, "the breach keeps the samples it was judged on"


def test_abort_after_needs_consecutive_breaching_evaluations() -> None:
    world = World()
    # Latency goes to 400ms while 'slow' is active; availability stays perfect.
    platform = FakePlatform(world, latency=lambda w, t: 0.4 if "slow" in w.active else 0.01)
    record, _ = run(experiment(), platform)
    assert record.status is Status.ABORTED
    assert record.abort is not None and record.abort.slo == "lat"
    lat = next(s for s in record.slos if s.name == "lat")
    assert lat.breaching_evaluations == 2


def test_breach_at_baseline_means_not_steady_nothing_injected_exit_1() -> None:
    world = World()
    record, orch = run(experiment(), FakePlatform(world, health=lambda w, t: False))
    assert record.status is Status.DEVIATED
    assert record.exit_code == 1
    assert "before any fault" in record.message and "avail" in record.message
    assert not [w for _, w in world.log if w.startswith("inject:")]
    assert Phase.INJECTING not in orch.state.history
    assert [r.name for r in record.rollbacks] == ["restore"]


def test_recovery_check_failure_is_deviated() -> None:
    world = World()
    # The service degrades permanently after the pause and never comes back.
    broken: dict[str, bool] = {}

    def health(w: World, t: float) -> bool:
        if "pause" in w.active:
            broken["yes"] = True
        return "yes" not in broken or w.active != set()

    exp = experiment(**{'successRate: ">= 90%"': 'successRate: ">= 0%"'})
    exp2 = exp.model_copy()
    record, _ = run(exp2, FakePlatform(world, health=health))
    assert record.status is Status.PASSED  # threshold >= 0% always holds

    strict = experiment(BASE.replace("abortAfter: 2", "abortAfter: 2").replace(
        "window: 2s}\n    - {name: lat", "window: 2s, abortAfter: 1000}\n    - {name: lat"))
    record, _ = run(strict, FakePlatform(World(), health=health))
    assert record.status is Status.DEVIATED
    assert record.exit_code == 1
    assert "recovery check failed" in record.message
    avail = next(s for s in record.slos if s.name == "avail")
    assert avail.verdict == "breached" and avail.breach_phase == "recovering"


def test_interrupt_reverts_everything_runs_rollbacks_exit_130() -> None:
    world = World()
    record, _ = run(experiment(), FakePlatform(world), interrupt_at=[8.5, 8.6])
    assert record.status is Status.INTERRUPTED
    assert record.exit_code == 130
    assert world.active == set()
    assert set(world.times("revert:slow")) and set(world.times("revert:pause"))
    assert [r.name for r in record.rollbacks] == ["restore"]


def test_inject_failure_stops_and_reverts_the_others() -> None:
    world = World(fail_inject={"pause"})
    record, _ = run(experiment(), FakePlatform(world))
    assert record.status is Status.ERROR
    assert record.exit_code == 1
    assert world.active == set()
    pause = next(f for f in record.faults if f.name == "pause")
    assert pause.inject_error and "cannot inject" in pause.inject_error
    assert world.times("revert:pause"), "a half-applied fault is reverted too"


def test_revert_failure_is_exit_4_and_names_the_fault() -> None:
    world = World(fail_revert={"slow"})
    record, _ = run(experiment(), FakePlatform(world))
    assert record.exit_code == 4
    slow = next(f for f in record.faults if f.name == "slow")
    assert slow.revert_error and slow.outstanding
    assert "REVERT FAILED for: slow" in record.message
    pause = next(f for f in record.faults if f.name == "pause")
    assert pause.reverted_at is not None  # one failed revert does not stop the others


def test_missing_target_fails_preflight_exit_2_touching_nothing() -> None:
    world = World(missing_targets={"pause"})
    platform = FakePlatform(world)
    record, orch = run(experiment(), platform)
    assert record.status is Status.ERROR
    assert record.exit_code == 2
    assert not platform.prepared
    assert world.log == []  # no inject, no rollback
    assert orch.state.history == [Phase.PREFLIGHT, Phase.REPORTING, Phase.DONE]
    assert "nothing was injected" in record.message


def test_max_duration_aborts_a_run_that_overruns() -> None:
    world = World()
    # A probe that takes 100 s per sample cannot be cut before its timeout... but maxDuration
    # is checked on the loop: the run stops at the limit regardless of the schedule.
    exp = experiment(**{"recovery: 5s": "recovery: 20s", "baseline: 5s":
                        "baseline: 5s\n  limits: {maxDuration: 60s}"})
    orch = Orchestrator(exp, FakePlatform(world), RunOptions(run_id="r"))

    async def main() -> RunRecord:
        # Simulate an overrun: the limit is 30s but we shrink it to fire mid-fault.
        object.__setattr__(exp.spec.limits, "max_duration", 9.0)
        return await orch.run()

    record = run_virtual(main())
    assert record.status is Status.ABORTED
    assert record.abort is not None and "maxDuration" in record.abort.reason
    assert world.active == set()


def test_rollback_failure_is_recorded_not_fatal() -> None:
    world = World(rollback_fails={"restore"})
    record, _ = run(experiment(), FakePlatform(world))
    assert record.status is Status.PASSED
    assert record.rollbacks[0].ok is False
    assert any("rollback 'restore' failed" in e for e in record.errors)


def test_one_shot_fault_is_not_outstanding() -> None:
    text = BASE.replace(
        "- {name: pause, at: 3s, duration: 10s, processPause: {target: {pid: 1}}}",
        "- {name: kill, at: 3s, processKill: {target: {pid: 1}}}",
    )
    world = World()
    record, _ = run(experiment(text), FakePlatform(world))
    kill = next(f for f in record.faults if f.name == "kill")
    assert kill.one_shot and kill.injected_at and not kill.outstanding
    assert world.times("revert:kill") == []


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def event(self, name: str, /, **fields: object) -> None:
        self.events.append((name, fields))


def test_hanging_probe_is_cut_off_and_counts_as_failed() -> None:
    world = World()
    hang = FakePlatform(world, latency=lambda w, t: 3600.0)
    record, _ = run(experiment(), hang)
    samples = record.probes["web"]
    assert samples, "a hanging probe still produces (failed) samples"
    assert all(not s.ok and "did not answer within 2s" in s.detail for s in samples)
    assert record.status is Status.DEVIATED  # not steady at baseline: nothing injected
    assert [w for _, w in world.log] == ["rollback:restore", "finish:deviated"]


def test_second_interrupt_reports_what_is_still_reverting_and_skips_nothing() -> None:
    world = World()
    recorder = Recorder()
    platform = FakePlatform(world)
    exp = experiment()
    orch = Orchestrator(exp, platform, RunOptions(run_id="r", observer=recorder))
    original_plan = platform.plan_fault

    async def slow_plan(spec):  # type: ignore[no-untyped-def]
        fault = await original_plan(spec)
        original_revert = fault.revert

        async def slow_revert() -> None:
            await asyncio.sleep(2.0)  # a revert that takes a while
            await original_revert()

        fault.revert = slow_revert  # type: ignore[method-assign]
        return fault

    platform.plan_fault = slow_plan  # type: ignore[method-assign]

    async def main() -> RunRecord:
        loop = asyncio.get_running_loop()
        loop.call_later(9.0, orch.interrupt, "SIGINT")
        loop.call_later(9.5, orch.interrupt, "SIGINT")
        return await orch.run()

    record = run_virtual(main())
    assert record.status is Status.INTERRUPTED
    again = [f for name, f in recorder.events if name == "interrupt_again"]
    assert again and again[0]["still_reverting"] == ["pause", "slow"]
    assert world.active == set()
    assert all(f.reverted_at for f in record.faults)


class MemoryLog:
    def __init__(self, fail_on: str | None = None) -> None:
        self.records: list[dict[str, object]] = []
        self.fail_on = fail_on

    def append(self, record_type: str, /, **fields: object) -> None:
        if record_type == self.fail_on:
            raise OSError("No space left on device")
        self.records.append({"type": record_type, **fields})


def test_intent_is_logged_before_inject_and_outcomes_after() -> None:
    world = World()
    log = MemoryLog()
    orch = Orchestrator(experiment(), FakePlatform(world), RunOptions(run_id="r", fault_log=log))
    run_virtual(orch.run())
    kinds = [(r["type"], r.get("fault")) for r in log.records]
    assert kinds[0] == ("start", None) and kinds[-1] == ("end", None)
    for name in ("slow", "pause"):
        seq = [k for k, f in kinds if f == name]
        assert seq == ["intent", "applied", "verified", "reverted"]
    intent = next(r for r in log.records if r["type"] == "intent")
    assert intent["target_keys"] == ["fake:slow"] and intent["revert_state"]


def test_journal_failure_means_nothing_is_injected() -> None:
    world = World()
    orch = Orchestrator(experiment(), FakePlatform(world),
                        RunOptions(run_id="r", fault_log=MemoryLog(fail_on="intent")))
    record = run_virtual(orch.run())
    assert not [w for _, w in world.log if w.startswith("inject:")]
    assert record.status is Status.ERROR
    assert "fault journal could not be written" in record.errors[0]


def test_transient_revert_failures_are_retried() -> None:
    world = World(transient_reverts={"slow": 2})
    record, _ = run(experiment(), FakePlatform(world))
    assert record.status is Status.PASSED
    assert len(world.times("revert:slow")) == 3
    assert world.active == set()


def test_permanent_revert_failure_is_not_retried() -> None:
    world = World(fail_revert={"slow"})
    record, _ = run(experiment(), FakePlatform(world))
    assert len(world.times("revert:slow")) == 1
    assert record.exit_code == 4


def test_claim_targets_refusal_stops_before_anything() -> None:
    from chaos.errors import InvalidInput

    world = World()
    claimed: list[list[str]] = []

    def claim(keys: list[str]) -> None:
        claimed.append(keys)
        raise InvalidInput("fake:slow has outstanding faults from run abc; run `chaos recover`")

    orch = Orchestrator(experiment(), FakePlatform(world),
                        RunOptions(run_id="r", claim_targets=claim))
    record = run_virtual(orch.run())
    assert claimed == [["fake:pause", "fake:slow"]]
    assert record.exit_code == 2 and world.log == []
    assert "chaos recover" in record.errors[0]


def test_unexpected_driver_exception_mid_run_still_reverts_and_finishes() -> None:
    world = World()
    platform = FakePlatform(world)
    exp = experiment()
    orch = Orchestrator(exp, platform, RunOptions(run_id="r"))
    calls = {"n": 0}

    def exploding_persist(record: RunRecord) -> None:
        # Blow up once, after the first fault is in (a bug in a sink, say).
        if world.active and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("boom")

    orch.options.persist = exploding_persist
    record = run_virtual(orch.run())
    assert record.status is Status.ERROR
    assert "unexpected error: RuntimeError: boom" in record.errors[0]
    assert world.active == set()
    assert orch.state.phase is Phase.DONE
    assert Phase.REVERTING in orch.state.history


# ------------------------------------------------------------------ a fault must be seen in effect


def test_fault_that_never_takes_effect_is_an_error_never_a_pass() -> None:
    world = World(no_effect={"pause"})
    exp = experiment(**{"baseline: 5s": "baseline: 5s\n  limits: {verifyTimeout: 2s}"})
    record, orch = run(exp, FakePlatform(world))
    assert record.status is Status.ERROR and record.exit_code == 1
    assert record.verdict == "ERROR"
    pause = next(f for f in record.faults if f.name == "pause")
    assert pause.not_in_effect and "the effect never showed" in pause.not_in_effect
    assert pause.verified_at is None and pause.reverted_at is not None
    assert record.abort is not None and record.abort.cause == "not-in-effect"
    assert "fault 'pause' did not take effect" in record.message
    # The run stopped injecting, reverted what it had, and ran its rollbacks.
    assert world.active == set()
    assert [r.name for r in record.rollbacks] == ["restore"]
    assert Phase.RECOVERING not in orch.state.history


def test_not_in_effect_is_found_within_the_verify_timeout() -> None:
    world = World(no_effect={"slow"})
    exp = experiment(**{"baseline: 5s": "baseline: 5s\n  limits: {verifyTimeout: 3s}"})
    record, _ = run(exp, FakePlatform(world))
    assert record.abort is not None
    # slow goes in at baseline (5 s) + 2 s; not seen for 3 s: the run stops at 10 s.
    assert record.abort.t == pytest.approx(10.0, abs=0.05)


def test_time_to_effect_is_recorded_and_verification_does_not_hold_the_timeline() -> None:
    world = World(effect_delay={"slow": 2.5})
    record, _ = run(experiment(), FakePlatform(world))
    assert record.status is Status.PASSED
    slow = next(f for f in record.faults if f.name == "slow")
    pause = next(f for f in record.faults if f.name == "pause")
    assert slow.effect_seconds == pytest.approx(2.5, abs=0.01)
    assert pause.effect_seconds == pytest.approx(0.0, abs=0.01)
    assert slow.effect == "fake effect of slow seen"
    # pause went in at its own time (1 s after slow), while slow was still being verified.
    assert world.times("inject:pause")[0] - world.times("inject:slow")[0] == pytest.approx(1.0)


def test_effect_not_seen_before_the_fault_ends_is_an_error() -> None:
    world = World(effect_delay={"slow": 20.0})
    record, _ = run(experiment(), FakePlatform(world))
    slow = next(f for f in record.faults if f.name == "slow")
    assert record.status is Status.ERROR and record.exit_code == 1
    assert slow.not_in_effect is not None


def test_one_shot_fault_is_verified_before_the_verdict() -> None:
    text = BASE.replace(
        "- {name: pause, at: 3s, duration: 10s, processPause: {target: {pid: 1}}}",
        "- {name: kill, at: 3s, processKill: {target: {pid: 1}}}",
    )
    world = World(no_effect={"kill"})
    record, _ = run(experiment(text), FakePlatform(world))
    kill = next(f for f in record.faults if f.name == "kill")
    assert kill.not_in_effect and record.status is Status.ERROR and record.exit_code == 1


def test_effect_still_there_after_revert_is_a_revert_failure_everywhere() -> None:
    world = World(sticky={"slow"})
    record, _ = run(experiment(), FakePlatform(world))
    assert record.exit_code == 4
    assert record.status is Status.ERROR and record.verdict == "REVERT FAILED"
    assert record.message.startswith("REVERT FAILED for: slow")
    slow = next(f for f in record.faults if f.name == "slow")
    assert "still there" in (slow.revert_error or "")


def test_platform_that_loses_its_hold_stops_the_run_and_reverts() -> None:
    world = World()
    platform = FakePlatform(world)
    orch = Orchestrator(experiment(), platform, RunOptions(run_id="r"))

    async def main() -> RunRecord:
        loop = asyncio.get_running_loop()
        loop.call_later(9.0, lambda: platform.stop and platform.stop(
            "the run lost its Lease shop/chaos-runner: held by someone-else"))
        return await orch.run()

    record = run_virtual(main())
    assert record.status is Status.ERROR and record.exit_code == 1
    assert record.abort is not None and record.abort.cause == "platform-lost"
    assert "lost its Lease" in record.message
    assert world.active == set()
    assert [r.name for r in record.rollbacks] == ["restore"]
