"""Every bad input gets a clear, located message and exit code 2, with no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_kit import GOOD

CASES = [
    # (id, replace-from, replace-to, expected fragment of the message, line, column)
    ("yaml-syntax", "metadata: {name: t}", "metadata: {name: t", "YAML syntax error", 4, 5),
    ("unknown-key", "timeout: 1s}", "timout: 1s}", "unknown key 'timout'; did you mean 'timeout'?",
     7, 48),
    ("wrong-unit", "interval: 250ms", "interval: 250", "expected a duration string with a unit",
     8, 17),
    ("bad-unit", "interval: 250ms", "interval: 250 ms", "'250 ms' is not a duration", 8, 17),
    ("bad-percent", '">= 99%"', '">= 99"', "expected a percentage", 10, 46),
    ("bad-comparison", '">= 99%"', '"99%"', "is not a comparison", 10, 46),
    ("unknown-probe", "probe: web", "probe: wbe", "refers to probe 'wbe', which is not defined", 10,
     28),
    ("missing-target-selector", "{target: {pid: 1}}", "{target: {}}",
     "a process target needs exactly one of: pid, pidfile, name, port", 13, 30),
    ("two-kinds", 'http: {url: "http://127.0.0.1:9/health", timeout: 1s}',
     'http: {url: "http://127.0.0.1:9/health"}\n      tcp: {host: a, port: 1}',
     "needs exactly one of: http, command, tcp, kubernetes, prometheus; it has http and tcp", 6, 7),
    ("no-duration", "      duration: 5s\n", "", "needs a 'duration' so it always ends", 12, 7),
    ("bad-api-version", "apiVersion: chaos/v1", "apiVersion: chaos/v2", "apiVersion", 1, 13),
    ("unset-env", 'url: "http://127.0.0.1:9/health"', 'url: "http://${NOPE_NOT_SET}/health"',
     "environment variable NOPE_NOT_SET is not set", 7, 19),
    ("bad-url", 'url: "http://127.0.0.1:9/health"', 'url: "127.0.0.1:9/health"',
     "is not an http(s) URL", 7, 19),
    ("duplicate-key", "  slos:\n", "  slos: []\n  slos:\n", "duplicate key 'slos'", 10, 3),
    ("bad-name", "metadata: {name: t}", "metadata: {name: Bad_Name}", "is not a valid name: use lowercase letters", 3, 18),
    ("port-range", "pid: 1}", "port: 70000}", "less than or equal to 65535", 13, 37),
    # One URL rule for every URL field: a rollback's URL is refused like a probe's.
    ("bad-rollback-url", "  faults:\n",
     '  rollbacks:\n    - {name: r, http: {url: "127.0.0.1:9/restart"}}\n  faults:\n',
     "'127.0.0.1:9/restart' is not an http(s) URL", 12, 29),
    ("bad-url-port", 'url: "http://127.0.0.1:9/health"', 'url: "http://127.0.0.1:99999/health"',
     "bad port", 7, 19),
    ("zero-load", "processPause: {target: {pid: 1}}", "cpuStress: {load: 0%}",
     "load must be above 0%", 13, 18),
    ("negative-verify-timeout", "      duration: 5s\n",
     "      duration: 5s\n  limits: {verifyTimeout: 5}\n", "expected a duration string", 16,
     27),
    ("plan-too-long", "      duration: 5s\n", "      duration: 5s\n  limits: {maxDuration: 3s}\n",
     "maxDuration is 3s", 16, 25),
]


def chaos(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaos", *args], capture_output=True, text=True, timeout=60, cwd=cwd,
    )


@pytest.mark.parametrize(("case", "old", "new", "fragment", "line", "col"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_experiment_is_exit_2_with_located_message(
    tmp_path: Path, case: str, old: str, new: str, fragment: str, line: int | None,
    col: int | None,
) -> None:
    assert old in GOOD, case
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    for command in ("validate", "run", "plan"):
        result = chaos(command, str(path))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert fragment in result.stderr, result.stderr
        if line is not None:
            assert f"{path}:{line}:{col}: " in result.stderr, result.stderr


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace("timeout: 1s}", "timout: 1s}").replace(
        "interval: 250ms", "interval: 250").replace("at: 1s", "at: soon"))
    result = chaos("validate", str(path))
    assert result.returncode == 2
    assert result.stderr.count(f"{path}:") == 3, result.stderr


def test_missing_file_and_directory(tmp_path: Path) -> None:
    result = chaos("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "no such experiment file" in result.stderr
    result = chaos("run", str(tmp_path))
    assert result.returncode == 2 and "is a directory" in result.stderr


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("")
    assert "the file is empty" in chaos("validate", str(path)).stderr
    path.write_text("- a\n- b\n")
    result = chaos("validate", str(path))
    assert result.returncode == 2 and "an experiment is a mapping" in result.stderr


def test_bad_flag_is_exit_2() -> None:
    result = chaos("run", "x.yaml", "--log-format", "xml")
    assert result.returncode == 2


def test_probe_template_errors(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    exp = tmp_path / "exp.yaml"
    exp.write_text(GOOD.replace(
        '    - name: web\n      http: {url: "http://127.0.0.1:9/health", timeout: 1s}\n'
        "      interval: 250ms\n",
        "    - use: probes/http-availability.yaml\n      name: web\n      with: {ur1: x}\n"))
    result = chaos("validate", str(exp), "--probes-dir", str(repo))
    assert result.returncode == 2
    assert "needs parameter 'url'" in result.stderr
    assert "has no parameter 'ur1'; did you mean 'url'?" in result.stderr
    exp.write_text(GOOD.replace(
        '    - name: web\n      http: {url: "http://127.0.0.1:9/health", timeout: 1s}\n'
        "      interval: 250ms\n", "    - use: probes/nope.yaml\n      name: web\n"))
    result = chaos("validate", str(exp))
    assert result.returncode == 2 and "probe template 'probes/nope.yaml' not found" in result.stderr


def test_schema_is_json_schema_with_camel_case_keys() -> None:
    import json

    result = chaos("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "chaos/v1 Experiment"
    text = result.stdout
    assert "abortAfter" in text and "successRate" in text and "abort_after" not in text


def test_examples_validate() -> None:
    repo = Path(__file__).resolve().parents[2]
    for path in sorted((repo / "experiments").glob("*.yaml")):
        result = chaos("validate", str(path), cwd=repo)
        assert result.returncode == 0, (path, result.stderr)


def test_bad_run_flags_are_exit_2_before_anything(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD)
    for flags, fragment in ((["--pushgateway", "not-a-url"], "--pushgateway must be an http"),
                            (["--metric-label", "nonsense"], "--metric-label must be NAME=VALUE"),
                            (["--log-format", "xml"], "--log-format must be")):
        result = chaos("run", str(path), *flags)
        assert result.returncode == 2, (flags, result.stderr)
        assert fragment in result.stderr
        assert "Traceback" not in result.stderr
