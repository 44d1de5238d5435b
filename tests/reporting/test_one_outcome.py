"""One outcome, decided once, read the same everywhere: the terminal summary, Markdown, JUnit,
HTML, the run metrics, a journal read back by `chaos report`, and the README's exit-code table.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos.journal.load import record_from_dict
from chaos.journal.outcome import EXIT_MEANINGS, ExitCode, decide
from chaos.journal.record import AbortRecord, FaultRecord, RunRecord, Status, StopCause
from chaos.model import load_experiment_text
from chaos.reporting import render_html, render_junit, render_markdown, render_summary
from chaos.reporting.metrics import render_run_metrics

REPO = Path(__file__).resolve().parents[2]
RECORDS = ["aborted_record", "passed_record", "revert_failed_record", "error_record",
           "deviated_record", "preflight_failed_record", "not_in_effect_record"]
EXPECTED = {
    "passed_record": ("passed", 0, "PASSED"),
    "aborted_record": ("aborted", 3, "ABORTED"),
    "revert_failed_record": ("error", 4, "REVERT FAILED"),
    "error_record": ("error", 1, "ERROR"),
    "deviated_record": ("deviated", 1, "DEVIATED"),
    "preflight_failed_record": ("error", 2, "ERROR"),
    "not_in_effect_record": ("error", 1, "ERROR"),
}


@pytest.mark.parametrize("name", RECORDS)
def test_every_renderer_says_the_same(name: str, request: pytest.FixtureRequest) -> None:
    record: RunRecord = request.getfixturevalue(name)
    status, code, word = EXPECTED[name]
    assert (str(record.status), record.exit_code, record.verdict) == (status, code, word)
    # The journal read back decides the same (chaos report renders from it).
    again = record_from_dict(json.loads(record.to_json()))
    assert decide(again).exit_code == code and decide(again).verdict == word
    exp = load_experiment_text("apiVersion: chaos/v1\nkind: Experiment\nmetadata: {name: x}\n"
                               "spec:\n  probes: [{name: p, tcp: {host: h, port: 1}}]\n")
    assert render_summary(record, exp).splitlines()[0].split("  ")[2] == f"{word} (exit {code})"
    assert render_markdown(again).startswith(f"**{word}** (exit {code})")
    assert f"{word}</span>" in render_html(again)
    suite = ET.fromstring(render_junit(again).split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["status"] == status and props["exit_code"] == str(code)
    metrics = render_run_metrics(again, {})
    assert f'chaos_run_status{{experiment="{record.experiment}",status="{status}"}} 1' in metrics
    assert re.search(rf"^chaos_run_exit_code{{[^}}]*}} {code}(\.0)?$", metrics, re.M)


def test_a_failed_revert_never_reads_as_a_pass(revert_failed_record: RunRecord) -> None:
    record = revert_failed_record
    assert record.message.startswith("REVERT FAILED for: slow")
    for text in (render_markdown(record), render_html(record), render_junit(record)):
        assert "REVERT FAILED" in text
        assert "PASSED" not in text


def _record(**kw: object) -> RunRecord:
    rec = RunRecord(run_id="r", experiment="e")
    for key, value in kw.items():
        setattr(rec, key, value)
    return rec


def _abort(cause: StopCause) -> AbortRecord:
    return AbortRecord(reason=f"because {cause}", slo=None, observed=None, threshold=None,
                       at=None, t=1.0, cause=cause.value)


def _injected(**kw: object) -> FaultRecord:
    fault = FaultRecord(name="f", kind="processPause", description="", targets=[], at=0.0,
                        duration=1.0, injected_at="2026-01-01T00:00:00.000Z",
                        verified_at="2026-01-01T00:00:00.100Z",
                        reverted_at="2026-01-01T00:00:01.000Z")
    for key, value in kw.items():
        setattr(fault, key, value)
    return fault


@pytest.mark.parametrize(("facts", "status", "code"), [
    ({"recovery_judged": True, "faults": [_injected()]}, Status.PASSED, ExitCode.PASSED),
    ({"recovery_judged": True, "recovery_failures": ["x"]}, Status.DEVIATED, ExitCode.DEVIATED),
    ({"baseline_breach": "not steady"}, Status.DEVIATED, ExitCode.DEVIATED),
    ({"preflight_errors": ["no target"]}, Status.ERROR, ExitCode.INVALID_INPUT),
    ({"abort": _abort(StopCause.SLO_BREACH), "faults": [_injected()]}, Status.ABORTED,
     ExitCode.ABORTED),
    ({"abort": _abort(StopCause.MAX_DURATION)}, Status.ABORTED, ExitCode.ABORTED),
    ({"abort": _abort(StopCause.INTERRUPT)}, Status.INTERRUPTED, ExitCode.INTERRUPTED),
    ({"abort": _abort(StopCause.NOT_IN_EFFECT), "faults": [_injected(verified_at=None,
                                                                     not_in_effect="x")]},
     Status.ERROR, ExitCode.DEVIATED),
    ({"abort": _abort(StopCause.INJECT_FAILED), "faults": [_injected()]}, Status.ERROR,
     ExitCode.DEVIATED),
    ({"abort": _abort(StopCause.INJECT_FAILED)}, Status.ERROR, ExitCode.INVALID_INPUT),
    ({"abort": _abort(StopCause.PLATFORM), "faults": [_injected()]}, Status.ERROR,
     ExitCode.DEVIATED),
    ({"abort": _abort(StopCause.UNEXPECTED), "faults": [_injected()]}, Status.ERROR,
     ExitCode.DEVIATED),
    # An effect never seen is never a pass, even when every SLO held.
    ({"recovery_judged": True, "faults": [_injected(verified_at=None)]}, Status.ERROR,
     ExitCode.DEVIATED),
    # A revert that failed wins over everything else.
    ({"recovery_judged": True, "faults": [_injected(reverted_at=None, revert_error="no")]},
     Status.ERROR, ExitCode.REVERT_FAILED),
    ({"abort": _abort(StopCause.INTERRUPT), "faults": [_injected(reverted_at=None,
                                                                 revert_error="no")]},
     Status.ERROR, ExitCode.REVERT_FAILED),
    ({}, Status.ERROR, ExitCode.INVALID_INPUT),
])
def test_decide(facts: dict[str, object], status: Status, code: ExitCode) -> None:
    outcome = decide(_record(**facts))
    assert (outcome.status, outcome.exit_code) == (status, code)
    assert outcome.verdict == ("REVERT FAILED" if code is ExitCode.REVERT_FAILED
                               else status.value.upper())


def test_readme_exit_code_table_is_the_exit_code_enum() -> None:
    readme = (REPO / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, re.M))
    assert {int(k): v for k, v in table.items()} == {int(c): m for c, m in EXIT_MEANINGS.items()}


def test_report_loads_neither_the_engine_nor_the_models(tmp_path: Path,
                                                        passed_record: RunRecord) -> None:
    """`chaos report` decides nothing anew: no engine, no experiment models, no tenacity. (The
    CLI framework, typer, loads pydantic for its own parameters; that is its start-up cost, not
    the reports'.)"""
    journal = tmp_path / "run.json"
    journal.write_text(passed_record.to_json())
    probe = ("import sys, runpy; sys.argv = ['chaos', 'report', sys.argv[1], '-f', 'html', "
             "'-o', sys.argv[2]]\n"
             "import chaos.cli\n"
             "try:\n    chaos.cli.main()\nexcept SystemExit:\n    pass\n"
             "bad = [m for m in sys.modules if m.split('.')[0] == 'tenacity' or "
             "m.startswith(('chaos.engine', 'chaos.model', 'chaos.faults', 'chaos.targets'))]\n"
             "print('LOADED', bad)\n")
    out = subprocess.run([sys.executable, "-c", probe, str(journal), str(tmp_path / "r.html")],
                         capture_output=True, text=True, timeout=60)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "r.html").exists()
