"""A run record as JUnit XML, for CI systems (GitHub, GitLab, Jenkins) that show test results.

One ``testsuite`` named after the experiment holds one ``testcase`` per SLO (classname ``slo``),
two per fault (classname ``fault``: ``<fault> in effect``, seen on its target or not, and
``<fault> reverted``), the steady-state checks that
applied (``steady-state baseline``, ``steady-state recovery``) and ``experiment``, the overall
verdict. Built with ElementTree so every attribute and text is escaped; characters XML 1.0 cannot
hold (control characters from a command's output, say) are replaced first.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from chaos.journal.outcome import ExitCode
from chaos.journal.record import FaultRecord, RunRecord, SloRecord, Status
from chaos.reporting.markdown import (
    exit_code_of,
    exit_meaning,
    format_slo_value,
    parse_time,
    run_seconds,
    status_word,
)

# Everything XML 1.0 does not allow in a document, even escaped.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


class _Case:
    def __init__(self, suite: ET.Element, classname: str, name: str, time: float = 0.0) -> None:
        self.element = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": _clean(name),
                                "time": f"{max(time, 0.0):.3f}"},
        )
        self.outcome = "passed"

    def _mark(self, tag: str, message: str, kind: str, text: str | None) -> None:
        child = ET.SubElement(self.element, tag, {"message": _clean(message), "type": kind})
        child.text = _clean(text if text is not None else message)
        self.outcome = tag

    def fail(self, message: str, kind: str, text: str | None = None) -> None:
        self._mark("failure", message, kind, text)

    def error(self, message: str, kind: str, text: str | None = None) -> None:
        self._mark("error", message, kind, text)

    def skip(self, message: str) -> None:
        ET.SubElement(self.element, "skipped", {"message": _clean(message)})
        self.outcome = "skipped"

    def out(self, text: str) -> None:
        ET.SubElement(self.element, "system-out").text = _clean(text)


def _slo_case(suite: ET.Element, slo: SloRecord) -> _Case:
    case = _Case(suite, "slo", slo.name)
    observed = format_slo_value(slo, slo.observed)
    what = f"{slo.objective} {slo.threshold} on probe '{slo.probe}'"
    if slo.verdict == "breached":
        when = (f"during {slo.breach_phase}" if slo.breach_phase
                else "at its last evaluation before the run stopped")
        message = (f"SLO '{slo.name}' breached {when}: observed {observed}, "
                   f"threshold {slo.threshold}")
        detail = [
            message,
            f"objective: {what}, window {slo.window:g}s",
            f"breaching evaluations: {slo.breaching_evaluations} of {slo.evaluations}",
        ]
        if slo.breached_at:
            detail.append(f"breached at: {slo.breached_at}")
        if slo.samples:
            failed = sum(1 for s in slo.samples if not s.ok)
            detail.append(f"judged on {len(slo.samples)} samples, {failed} failed")
        case.fail(message, "SloBreached", "\n".join(detail))
    elif slo.verdict == "passed":
        case.out(f"SLO '{slo.name}' held: observed {observed}, threshold {slo.threshold} ({what})")
    elif slo.verdict == "no-data":
        case.skip(f"SLO '{slo.name}': no data; the probe recorded no usable samples ({what})")
    else:
        case.skip(f"SLO '{slo.name}' was not judged: the run stopped before its verdict")
    return case


def _effect_case(suite: ET.Element, record: RunRecord, fault: FaultRecord) -> _Case:
    case = _Case(suite, "fault", f"{fault.name} in effect", fault.effect_seconds or 0.0)
    targets = ", ".join(fault.targets) or "no targets"
    if fault.injected_at is None:
        case.skip(f"fault '{fault.name}' was never injected")
    elif fault.not_in_effect:
        case.fail(
            f"fault '{fault.name}' ({fault.kind}) did not take effect: {fault.not_in_effect}",
            "NotInEffect",
            f"fault '{fault.name}' ({fault.kind}) did not take effect on {targets}\n"
            f"cause: {fault.not_in_effect}",
        )
    elif fault.verified_at is None:
        case.skip(f"fault '{fault.name}': the run stopped before its effect was seen")
    else:
        case.out(f"{fault.kind} on {targets} in effect after {fault.effect_seconds:g}s: "
                 f"{fault.effect}")
    return case


def _fault_case(suite: ET.Element, record: RunRecord, fault: FaultRecord) -> _Case:
    injected = run_seconds(record, fault.injected_at)
    reverted = run_seconds(record, fault.reverted_at)
    took = reverted - injected if injected is not None and reverted is not None else 0.0
    case = _Case(suite, "fault", f"{fault.name} reverted", took)
    targets = ", ".join(fault.targets) or "no targets"
    attempted = fault.injected_at is not None or fault.inject_error is not None
    if not attempted:
        case.skip(f"fault '{fault.name}' was never injected")
        return case
    if fault.revert_error:
        case.fail(
            f"fault '{fault.name}' ({fault.kind}) failed to revert: {fault.revert_error}",
            "RevertFailed",
            f"fault '{fault.name}' ({fault.kind}) failed to revert: {fault.revert_error}\n"
            f"targets: {targets}\nit may still be active: run `chaos recover` to remove it",
        )
    elif fault.outstanding:
        case.fail(
            f"fault '{fault.name}' ({fault.kind}) was injected but never reverted",
            "NotReverted",
            f"fault '{fault.name}' ({fault.kind}) was injected at {fault.injected_at} but never "
            f"reverted\ntargets: {targets}\nrun `chaos recover` to remove it",
        )
    else:
        lines = [f"{fault.kind} on {targets}"]
        if fault.one_shot:
            lines.append("one-shot fault: nothing to revert")
        else:
            lines.append(f"injected {fault.injected_at}, reverted {fault.reverted_at}")
        if fault.inject_error:
            lines.append(f"inject failed (what was applied was reverted): {fault.inject_error}")
        case.out("\n".join(lines))
    return case


def _phases(record: RunRecord) -> set[str]:
    return {str(p.get("phase")) for p in record.phases}


def _steady_cases(suite: ET.Element, record: RunRecord) -> list[_Case]:
    phases = _phases(record)
    cases: list[_Case] = []
    if "baseline" in phases:
        case = _Case(suite, "steady-state", "steady-state baseline")
        cases.append(case)
        bad = [s for s in record.slos if s.breach_phase == "baseline"]
        if bad:
            case.fail(record.message or "the steady state did not hold before any fault",
                      "NotSteady",
                      "\n".join([record.message, *(_breach_line(s) for s in bad)]).strip())
    if "recovering" in phases:
        case = _Case(suite, "steady-state", "steady-state recovery")
        cases.append(case)
        bad = [s for s in record.slos if s.breach_phase == "recovering"]
        if bad:
            case.fail(record.message or "the recovery check failed", "RecoveryFailed",
                      "\n".join([record.message, *(_breach_line(s) for s in bad)]).strip())
    elif "baseline" in phases and "injecting" in phases:
        case = _Case(suite, "steady-state", "steady-state recovery")
        cases.append(case)
        case.skip("the run stopped before the recovery check")
    return cases


def _breach_line(slo: SloRecord) -> str:
    return (f"SLO '{slo.name}': observed {format_slo_value(slo, slo.observed)}, "
            f"threshold {slo.threshold}")


def _experiment_case(suite: ET.Element, record: RunRecord) -> _Case:
    case = _Case(suite, "experiment", "experiment", record.duration or 0.0)
    code = exit_code_of(record)
    summary = f"{status_word(record)} (exit {code}): {record.message}".rstrip(": ")
    if code == ExitCode.REVERT_FAILED:
        case.error(record.message or "a revert failed", "RevertFailed",
                   "\n".join([summary, *record.errors]))
    elif record.status in (Status.ERROR, Status.RUNNING):
        message = record.message if record.status is Status.ERROR else "the run did not finish"
        case.error(message or "the run failed", "RunError", "\n".join([summary, *record.errors]))
    elif record.status in (Status.ABORTED, Status.INTERRUPTED) and record.abort is not None:
        kind = "Aborted" if record.status is Status.ABORTED else "Interrupted"
        case.fail(record.abort.reason, kind,
                  f"{summary}\nabort at t={record.abort.t:.2f}s: {record.abort.reason}")
    elif record.status is not Status.PASSED:
        case.fail(record.message or str(record.status), "Deviated", summary)
    else:
        case.out(summary)
    return case


def _suite_out(record: RunRecord) -> str:
    code = exit_code_of(record)
    lines = [f"{record.experiment}  run {record.run_id}  {status_word(record)} (exit {code})"
             f"  in {record.duration or 0:.1f}s"]
    if record.message:
        lines.append(record.message)
    if record.abort is not None:
        lines.append(f"abort at t={record.abort.t:.2f}s: {record.abort.reason}")
    lines += [f"error: {e}" for e in record.errors]
    meaning = exit_meaning(code)
    if meaning:
        lines.append(f"exit {code}: {meaning}")
    return "\n".join(lines)


def _timestamp(record: RunRecord) -> str:
    # The JUnit schema wants a local date-time without zone or fraction; the journal is in UTC.
    start = parse_time(record.started_at)
    return start.strftime("%Y-%m-%dT%H:%M:%S") if start else "1970-01-01T00:00:00"


def render_junit(record: RunRecord) -> str:
    """The run as a JUnit XML document (a string, with the XML declaration)."""
    root = ET.Element("testsuites", {"name": "chaos"})
    suite = ET.SubElement(root, "testsuite", {"name": _clean(record.experiment)})
    props = ET.SubElement(suite, "properties")
    for key, value in (("run_id", record.run_id), ("status", str(record.status)),
                       ("exit_code", str(exit_code_of(record))),
                       ("experiment_file", record.experiment_file or "")):
        ET.SubElement(props, "property", {"name": key, "value": _clean(value)})
    cases = [_slo_case(suite, s) for s in record.slos]
    for f in record.faults:
        cases += [_effect_case(suite, record, f), _fault_case(suite, record, f)]
    cases += _steady_cases(suite, record)
    cases.append(_experiment_case(suite, record))
    outcomes = [c.outcome for c in cases]
    counts = {
        "tests": str(len(outcomes)),
        "failures": str(outcomes.count("failure")),
        "errors": str(outcomes.count("error")),
        "skipped": str(outcomes.count("skipped")),
        "time": f"{record.duration or 0.0:.3f}",
    }
    suite.attrib.update({**counts, "timestamp": _timestamp(record), "id": "0",
                         "hostname": "chaos-runner", "package": "chaos"})
    ET.SubElement(suite, "system-out").text = _clean(_suite_out(record))
    root.attrib.update(counts)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


__all__ = ["render_junit"]
