"""JUnit, Markdown and HTML reports of real (virtual-time) runs, and loading saved journals."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import chaos.reporting
from chaos.errors import InvalidInput
from chaos.journal.load import load_record
from chaos.journal.record import RunRecord, Status
from chaos.reporting import render_html, render_junit, render_markdown

RECORDS = ["aborted_record", "passed_record", "revert_failed_record", "error_record",
           "deviated_record", "preflight_failed_record"]


def cases(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    return {f"{c.get('classname')}/{c.get('name')}": c for c in root.iter("testcase")}


def suite_of(xml: str) -> ET.Element:
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    return suite


# ------------------------------------------------------------------------------ JUnit


@pytest.mark.parametrize("name", RECORDS)
def test_junit_counts_match_the_testcases(name: str, request: pytest.FixtureRequest) -> None:
    record: RunRecord = request.getfixturevalue(name)
    xml = render_junit(record)
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    suite = suite_of(xml)
    assert suite.get("name") == record.experiment
    testcases = list(suite.iter("testcase"))
    assert int(suite.get("tests", "-1")) == len(testcases)
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        assert int(suite.get(attr, "-1")) == sum(1 for c in testcases if c.find(tag) is not None)
        assert root.get(attr) == suite.get(attr)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp", ""))
    assert float(suite.get("time", "-1")) == pytest.approx(record.duration or 0.0, abs=1e-3)
    out = suite.find("system-out")
    assert out is not None and out.text and record.message in out.text
    # every testcase has at most one outcome element
    for c in testcases:
        assert len([e for e in c if e.tag in ("failure", "error", "skipped")]) <= 1


def test_junit_aborted_run_names_slo_observed_threshold_and_phase(
        aborted_record: RunRecord) -> None:
    xml = render_junit(aborted_record)
    by = cases(xml)
    failure = by["slo/avail"].find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert "avail" in message and "87.5%" in message and ">= 90%" in message
    assert "observing" in message
    assert by["slo/lat"].find("failure") is None
    experiment = by["experiment/experiment"].find("failure")
    assert experiment is not None and aborted_record.abort is not None
    assert experiment.get("message") == aborted_record.abort.reason
    for fault in ("slow", "pause"):
        case = by[f"fault/{fault} reverted"]
        assert list(case.iter("failure")) == [] and list(case.iter("error")) == []
    assert by["steady-state/steady-state baseline"].find("failure") is None
    assert by["steady-state/steady-state recovery"].find("skipped") is not None
    assert suite_of(xml).get("failures") == "2"  # the SLO and the experiment


def test_junit_revert_failure_fails_the_fault_and_errors_the_experiment(
        revert_failed_record: RunRecord) -> None:
    by = cases(render_junit(revert_failed_record))
    failure = by["fault/slow reverted"].find("failure")
    assert failure is not None and "cannot revert slow" in failure.get("message", "")
    assert "chaos recover" in (failure.text or "")
    assert by["fault/pause reverted"].find("failure") is None
    error = by["experiment/experiment"].find("error")
    assert error is not None and "REVERT FAILED" in error.get("message", "")


def test_junit_error_run_is_an_error(error_record: RunRecord) -> None:
    assert error_record.status is Status.ERROR
    by = cases(render_junit(error_record))
    error = by["experiment/experiment"].find("error")
    assert error is not None and "failed to inject" in error.get("message", "")


def test_junit_passed_run_has_no_failures(passed_record: RunRecord) -> None:
    xml = render_junit(passed_record)
    suite = suite_of(xml)
    assert (suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("0", "0", "0")
    by = cases(xml)
    assert "steady-state/steady-state recovery" in by
    assert "steady-state/steady-state baseline" in by


def test_junit_deviated_at_baseline_fails_baseline_and_skips_faults(
        deviated_record: RunRecord) -> None:
    by = cases(render_junit(deviated_record))
    failure = by["steady-state/steady-state baseline"].find("failure")
    assert failure is not None and "before any fault" in failure.get("message", "")
    skipped = by["fault/slow reverted"].find("skipped")
    assert skipped is not None and "never injected" in skipped.get("message", "")
    assert "steady-state/steady-state recovery" not in by


def test_junit_escapes_markup_and_control_characters(aborted_record: RunRecord) -> None:
    nasty = 'a<b>&"c\'\x1b[31m\x00'
    record = dataclasses.replace(aborted_record, experiment=nasty, message=nasty,
                                 errors=[nasty])
    xml = render_junit(record)
    suite = suite_of(xml)  # parses: well-formed
    assert suite.get("name", "").startswith('a<b>&"c\'')
    out = suite.find("system-out")
    assert out is not None and "a<b>&" in (out.text or "")


# ------------------------------------------------------------------------------ Markdown


def test_markdown_aborted_run(aborted_record: RunRecord) -> None:
    md = render_markdown(aborted_record)
    lines = md.splitlines()
    assert lines[0].startswith("**ABORTED** (exit 3)")
    assert "checkout-survives-pause" in lines[0]
    assert aborted_record.abort is not None
    assert any(line.startswith("**Abort reason**") and aborted_record.abort.reason in line
               for line in lines)
    assert "| SLO | objective | threshold | observed | verdict |" in lines
    assert "| fault | kind | targets | injected | effect | reverted | error |" in lines
    assert "| rollback | result | detail |" in lines
    avail = next(line for line in lines if line.startswith("| avail |"))
    assert "87.5%" in avail and ">= 90%" in avail and "**breached** (observing)" in avail
    slow = next(line for line in lines if line.startswith("| slow |"))
    assert "networkLatency" in slow and "fake-target-of-slow" in slow and "+7.00s" in slow
    assert len(lines) < 60
    # every table row has as many cells as its header
    for line in lines:
        if line.startswith("| avail") or line.startswith("| lat"):
            assert line.count(" | ") == 4


@pytest.mark.parametrize("name", RECORDS)
def test_markdown_verdict_line_matches_exit_code(name: str, request: pytest.FixtureRequest
                                                 ) -> None:
    record: RunRecord = request.getfixturevalue(name)
    md = render_markdown(record)
    assert re.match(r"\*\*[A-Z ]+\*\* \(exit \d+\)", md)
    assert f"**{record.verdict}** (exit {record.exit_code})" in md.splitlines()[0]
    assert len(md.splitlines()) < 60


def test_markdown_revert_failure_is_loud(revert_failed_record: RunRecord) -> None:
    md = render_markdown(revert_failed_record)
    assert md.startswith("**REVERT FAILED** (exit 4)")
    slow = next(line for line in md.splitlines() if line.startswith("| slow |"))
    assert "FAILED" in slow and "**cannot revert slow**" in slow


def test_markdown_cells_cannot_break_the_table(aborted_record: RunRecord) -> None:
    fault = dataclasses.replace(aborted_record.faults[0], name="a|b", targets=[
        f"pod-{i}|x\nnewline" for i in range(40)])
    record = dataclasses.replace(aborted_record, faults=[fault])
    row = next(line for line in render_markdown(record).splitlines() if line.startswith("| a\\|b"))
    assert "a\\|b" in row and "\n" not in row
    assert len(row) < 300
    assert row.replace("\\|", "").count("|") == 8


# ------------------------------------------------------------------------------ HTML


def svg_of(page: str) -> ET.Element:
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])  # the inline SVG is well-formed XML


def with_class(svg: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in svg.iter() if cls in (e.get("class") or "").split()]


def test_html_timeline_has_lanes_faults_thresholds_and_abort(aborted_record: RunRecord) -> None:
    page = render_html(aborted_record)
    assert page.startswith("<!DOCTYPE html>")
    svg = svg_of(page)
    assert svg.get("id") == "timeline"
    lanes = with_class(svg, "probe-lane")
    assert [lane.get("data-probe") for lane in lanes] == ["web", "api"]
    windows = with_class(svg, "fault-window")
    assert sorted(w.get("data-fault") or "" for w in windows) == ["pause", "slow"]
    thresholds = with_class(svg, "slo-threshold")
    assert sorted(t.get("data-slo") or "" for t in thresholds) == ["api-latency", "lat"]
    web = lanes[0]
    assert [t.get("data-slo") for t in with_class(web, "slo-threshold")] == ["lat"]
    assert with_class(web, "sample-fail"), "the failed sample is marked"
    assert len(with_class(svg, "abort-marker")) == 1
    assert "abort t=" in page
    # fault windows sit where the faults were: 'slow' starts before 'pause'
    slow = next(w for w in windows if w.get("data-fault") == "slow")
    pause = next(w for w in windows if w.get("data-fault") == "pause")
    assert float(slow.get("x", "0")) < float(pause.get("x", "0"))
    for section in ("SLO verdicts", "Faults", "Rollbacks", "Errors"):
        assert f"<h2>{section}</h2>" in page


def test_html_threshold_is_drawn_at_its_value(passed_record: RunRecord) -> None:
    svg = svg_of(render_html(passed_record))
    lane = with_class(svg, "probe-lane")[0]
    line = with_class(lane, "slo-threshold")[0].find("line")
    assert line is not None
    polyline = lane.find("polyline")
    assert polyline is not None
    ys = [float(p.split(",")[1]) for p in (polyline.get("points") or "").split()]
    # 300ms sits above (smaller y) every sample (all below 200ms)
    assert float(line.get("y1", "0")) < min(ys)


def test_html_passed_run_has_no_abort_marker(passed_record: RunRecord) -> None:
    svg = svg_of(render_html(passed_record))
    assert with_class(svg, "abort-marker") == []
    assert len(with_class(svg, "fault-window")) == 2


def test_html_unreverted_fault_is_marked(revert_failed_record: RunRecord) -> None:
    svg = svg_of(render_html(revert_failed_record))
    left = with_class(svg, "not-reverted")
    assert [w.get("data-fault") for w in left] == ["slow"]


def test_html_preflight_failure_still_renders(preflight_failed_record: RunRecord) -> None:
    page = render_html(preflight_failed_record)
    svg = svg_of(page)
    assert with_class(svg, "fault-window") == []
    assert "nothing was injected" in page


@pytest.mark.parametrize("name", RECORDS)
def test_html_is_self_contained(name: str, request: pytest.FixtureRequest) -> None:
    page = render_html(request.getfixturevalue(name))
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<link" not in lowered
    assert "<script" not in lowered
    assert "@import" not in lowered
    assert "url(" not in lowered
    assert "<img" not in lowered
    assert "@media print" in page


def test_html_escapes_all_text(aborted_record: RunRecord) -> None:
    evil = "<script>alert(1)</script>&"
    fault = dataclasses.replace(aborted_record.faults[0], name=evil, targets=[evil],
                                revert_error=evil)
    slo = dataclasses.replace(aborted_record.slos[1], name=evil)
    record = dataclasses.replace(aborted_record, experiment=evil, message=evil, errors=[evil],
                                 faults=[fault], slos=[slo],
                                 probes={evil: aborted_record.probes["web"]})
    page = render_html(record)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in page
    svg_of(page)


# ------------------------------------------------------------------------------ journals


@pytest.mark.parametrize("name", RECORDS)
def test_round_trip_through_a_saved_journal(name: str, request: pytest.FixtureRequest,
                                            tmp_path: Path) -> None:
    record: RunRecord = request.getfixturevalue(name)
    path = tmp_path / "run.json"
    path.write_text(record.to_json(), encoding="utf-8")
    loaded = load_record(path)
    assert loaded == record
    assert loaded.status is record.status
    assert render_junit(loaded) == render_junit(record)
    assert render_markdown(loaded) == render_markdown(record)
    assert render_html(loaded) == render_html(record)


def test_load_record_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"run\.json: no such file"):
        load_record(tmp_path / "run.json")


def test_load_record_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"run_id": "x",\n  oops}', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"run\.json:2:3: not valid JSON"):
        load_record(path)


def test_load_record_names_the_missing_key(tmp_path: Path, aborted_record: RunRecord) -> None:
    data = aborted_record.to_dict()
    del data["slos"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInput, match="not a chaos run journal: it has no key 'slos'"):
        load_record(path)

    data = aborted_record.to_dict()
    del data["faults"][1]["targets"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"faults\[1\] has no key 'targets'"):
        load_record(path)

    data = aborted_record.to_dict()
    del data["abort"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInput, match="no key 'abort'"):
        load_record(path)


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "the top level should be an object, got a list"),
    ('{"kind": "Experiment"}', "it has no key 'status'"),
])
def test_load_record_rejects_other_json(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=re.escape(message)) as info:
        load_record(path)
    assert "chaos run --journal" in str(info.value)


def test_load_record_rejects_wrong_types_and_status(tmp_path: Path,
                                                    aborted_record: RunRecord) -> None:
    path = tmp_path / "run.json"
    data = aborted_record.to_dict()
    data["status"] = "exploded"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInput, match="'status' is 'exploded', expected one of"):
        load_record(path)
    data = aborted_record.to_dict()
    data["probes"]["web"][3]["ok"] = "yes"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"'probes\.web\[3\]\.ok' should be true or false"):
        load_record(path)


def test_reporting_exports_everything() -> None:
    public = {n for n in dir(chaos.reporting) if n.startswith("render_")}
    assert set(chaos.reporting.__all__) == public
    assert {"render_html", "render_junit", "render_markdown"} <= public


def test_ci_examples_are_valid_yaml_and_gate_on_1_3_4() -> None:
    import yaml

    docs = Path(__file__).resolve().parents[2] / "docs" / "ci"
    gha = yaml.safe_load((docs / "github-actions.yml").read_text())
    steps = gha["jobs"]["chaos"]["steps"]
    run_step = next(s for s in steps if s.get("id") == "chaos")
    assert "--junit" in run_step["run"] and "--markdown" in run_step["run"]
    gate = next(s for s in steps if s.get("name") == "Gate")["run"]
    for code in ("1)", "3)", "4)"):
        assert code in gate and "exit 1" in gate
    gitlab = yaml.safe_load((docs / "gitlab-ci.yml").read_text())
    job = gitlab["resilience"]
    assert job["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert "chaos run" in job["script"][1]


def test_records_carry_probe_scheduling_lag(passed_record: RunRecord) -> None:
    lag = passed_record.probe_lag
    assert set(lag) == set(passed_record.probes)
    for name, summary in lag.items():
        assert summary["n"] == pytest.approx(len(passed_record.probes[name]), abs=1)
        # virtual time: every sample starts exactly on its tick
        assert summary["p99"] == summary["max"] == pytest.approx(0.0, abs=1e-6)


def test_journals_without_probe_lag_still_load_and_bad_lag_is_named(
        tmp_path: Path, passed_record: RunRecord) -> None:
    data = passed_record.to_dict()
    del data["probe_lag"]  # written before the field existed
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_record(path).probe_lag == {}
    data["probe_lag"] = {"web": {"p99": "slow"}}
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InvalidInput, match="'probe_lag' must map probe names"):
        load_record(path)


def test_summary_warns_when_the_guard_sampled_late(passed_record: RunRecord,
                                                   experiment_text: str) -> None:
    from chaos.model import load_experiment_text
    from chaos.reporting.summary import render_summary

    exp = load_experiment_text(experiment_text)
    assert "started late" not in render_summary(passed_record, exp)
    late = dataclasses.replace(passed_record, probe_lag={
        **passed_record.probe_lag, "web": {"n": 90, "p50": 0.001, "p99": 0.180, "max": 0.4}})
    text = render_summary(late, exp)
    assert ("warning: probe web started late (scheduling lag p99 180 ms, max 400 ms, "
            "interval 250 ms)") in text
    assert "probe api started late" not in text
