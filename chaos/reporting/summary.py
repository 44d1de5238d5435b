"""The one-screen summary printed at the end of a run, and the plan printed before one.

Both go to a terminal and carry text the runner does not choose (a probe's detail is what a
server answered, a target's description is a process's command line): every line is passed
through :func:`chaos.reporting.markdown.visible`, so ESC, BEL and line breaks inside a value are
shown as ``\\x1b``, ``\\x07``, ``\\n`` instead of driving the terminal or forging lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chaos.journal.outcome import outcome_of
from chaos.journal.record import RunRecord
from chaos.objectives import format_observed
from chaos.reporting.markdown import visible
from chaos.units import format_duration

if TYPE_CHECKING:
    from chaos.model.experiment import Experiment


#: Scheduling lag (p99) above which the summary warns that the guard ran late.
LATE_GUARD_S = 0.05


def _time(iso_ts: str | None) -> str:
    return iso_ts[11:23] if iso_ts else "-"


def render_summary(record: RunRecord, experiment: Experiment, journal: str | None = None) -> str:
    lines: list[str] = []
    outcome = outcome_of(record)
    lines.append(
        f"{record.experiment}  run {record.run_id}  {outcome.verdict} "
        f"(exit {int(outcome.exit_code)})"
        f"  in {record.duration or 0:.1f}s"
    )
    if record.message:
        lines.append(f"  {record.message}")
    if record.abort is not None:
        lines.append(f"  abort at t={record.abort.t:.2f}s: {record.abort.reason}")
    if record.faults:
        lines.append("faults:")
        for f in record.faults:
            if f.one_shot:
                state = f"done {_time(f.injected_at)}" if f.injected_at else "not injected"
            elif f.injected_at is None and f.inject_error is None:
                state = "not injected"
            else:
                state = f"injected {_time(f.injected_at)}  reverted {_time(f.reverted_at)}"
            if f.verified_at is not None:
                state += f"  in effect after {f.effect_seconds or 0:g}s"
            elif f.not_in_effect:
                state += f"  NOT IN EFFECT: {f.not_in_effect}"
            elif f.injected_at is not None:
                state += "  effect not verified"
            if f.inject_error:
                state += f"  INJECT FAILED: {f.inject_error}"
            if f.revert_error:
                state += f"  REVERT FAILED: {f.revert_error}"
            lines.append(f"  {f.name:<20} {f.kind:<16} {state}")
            for target in f.targets[:5]:
                lines.append(f"      target: {target}")
            if len(f.targets) > 5:
                lines.append(f"      ... and {len(f.targets) - 5} more")
    if record.slos:
        lines.append("SLOs:")
        for s in record.slos:
            mark = {"passed": "ok ", "breached": "XX ", "no-data": "?? "}.get(s.verdict, "-- ")
            observed = format_observed(s.objective, s.observed)
            where = f" ({s.breach_phase})" if s.breach_phase else ""
            lines.append(
                f"  {mark}{s.name:<18} {s.objective:<20} {s.threshold:<10} observed "
                f"{observed:<9} {s.verdict}{where}"
            )
    if record.probes:
        lines.append("probes:")
        for name, samples in record.probes.items():
            ok = sum(1 for x in samples if x.ok)
            last_bad = next((x.detail for x in reversed(samples) if not x.ok), None)
            extra = f"  last failure: {last_bad}" if last_bad else ""
            lines.append(f"  {name:<20} {ok}/{len(samples)} ok{extra}")
        intervals = {p.name: p.interval for p in experiment.spec.probes}
        for name, lag in record.probe_lag.items():
            # A guard that samples late sees a breach late: say so when it matters.
            interval = intervals.get(name)
            if interval and lag.get("p99", 0.0) > max(LATE_GUARD_S, interval / 4):
                lines.append(
                    f"  warning: probe {name} started late (scheduling lag p99 "
                    f"{lag['p99'] * 1000:.0f} ms, max {lag['max'] * 1000:.0f} ms, interval "
                    f"{interval * 1000:.0f} ms): the machine is starved; the guard reacted "
                    "that much later")
    if record.rollbacks:
        lines.append("rollbacks:")
        for r in record.rollbacks:
            lines.append(f"  {'ok ' if r.ok else 'XX '}{r.name:<18} {r.detail}")
    for error in record.errors:
        lines.append(f"error: {error}")
    if journal:
        lines.append(f"journal: {journal}")
    return "\n".join(visible(line) for line in lines)


def render_plan(experiment: Experiment, faults: list[tuple[str, str, list[str]]]) -> str:
    """``faults`` holds (fault name, what it does, resolved targets) in declaration order."""
    spec = experiment.spec
    lines = [
        f"plan for {experiment.metadata.name} (platform {spec.target.platform}); nothing was "
        "touched",
        f"  baseline {format_duration(spec.baseline)}, faults over "
        f"{format_duration(spec.fault_span)}, recovery {format_duration(spec.recovery)}; "
        f"planned {format_duration(spec.planned_duration)}, limit "
        f"{format_duration(spec.limits.max_duration)}",
    ]
    if spec.proxies:
        lines.append("proxies (started before the baseline, pass-through until a fault):")
        for p in spec.proxies:
            lines.append(f"  {p.name}: {p.listen} -> {p.upstream}")
    lines.append("probes:")
    for probe in spec.probes:
        lines.append(f"  {probe.name}: {probe.kind.key} {probe.kind.describe(probe.params)} every "
                     f"{format_duration(probe.interval)}")
    if spec.slos:
        lines.append("SLOs (the guard aborts and reverts on breach):")
        for s in spec.slos:
            lines.append(
                f"  {s.name}: {s.objective.key} {s.threshold} on {s.probe} over "
                f"{format_duration(s.window)}, abort after {s.abort_after}"
            )
    lines.append("faults:")
    if not faults:
        lines.append("  (none)")
    by_name = {f.name: f for f in spec.faults}
    for name, what, targets in faults:
        f = by_name[name]
        when = f"at +{format_duration(f.at)}"
        when += f" for {format_duration(f.duration)}" if f.duration is not None else " (one-shot)"
        lines.append(f"  {name} [{f.kind.key}] {when}: {what}")
        for target in targets:
            lines.append(f"      will touch: {target}")
    if spec.rollbacks:
        lines.append("rollbacks (always run at the end):")
        for r in spec.rollbacks:
            lines.append(f"  {r.name}: {r.describe()}")
    return "\n".join(visible(line) for line in lines)
