"""Through the real CLI: a PromQL SLO guarding a run, and run metrics pushed to a real
Pushgateway (also when the run is aborted)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from promkit import Prometheus, Pushgateway, parse

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: prom-cli}}
spec:
  baseline: 1s
  recovery: 1s
  probes:
    - name: up
      interval: 250ms
      prometheus: {{url: "{prom}", query: 'up{{job="demo"}}', expect: "== 1"}}
    - name: api
      interval: 100ms
      http: {{url: "{demo}/health"}}
  slos:
    - {{name: scraped, probe: up, consecutiveFailures: "< 3"}}
    - {{name: fast, probe: api, latencyP90: "{latency}", window: 1s}}
  faults:
    - name: pause
      processPause: {{target: {{pid: {pid}}}}}
      at: 200ms
      duration: 1s
"""


def run(tmp_path: Path, prometheus: Prometheus, pushgateway: Pushgateway, latency: str,
        pid: int, *extra: str) -> subprocess.CompletedProcess[str]:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.format(prom=prometheus.url, demo=prometheus.demo.url,
                                     latency=latency, pid=pid))
    return subprocess.run(
        [sys.executable, "-m", "chaos", "run", str(exp), "--state-dir", str(tmp_path / "s"),
         "--pushgateway", pushgateway.url, "--metric-label", "team=payments", *extra],
        capture_output=True, text=True, timeout=120)


def test_cli_pushes_run_metrics_also_when_aborted(tmp_path: Path, prometheus: Prometheus,
                                                  pushgateway: Pushgateway) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        passed = run(tmp_path, prometheus, pushgateway, "< 5s", sleeper.pid)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert f"metrics: pushed to {pushgateway.url}" in passed.stdout
        # an impossible latency objective: the second run does not pass (not steady: exit 1,
        # or aborted: exit 3), and its metrics are pushed all the same
        aborted = run(tmp_path, prometheus, pushgateway, "< 1us", sleeper.pid)
        assert aborted.returncode in (1, 3), aborted.stdout + aborted.stderr
        assert f"metrics: pushed to {pushgateway.url}" in aborted.stdout
    finally:
        sleeper.kill()
        sleeper.wait()
    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as resp:
        samples, _ = parse(resp.read().decode())
    wanted = {("experiment", "prom-cli"), ("team", "payments"), ("job", "chaos-runner")}
    ours = {name: v for (name, labels), v in samples.items() if wanted <= labels}
    assert ours["chaos_run_last_timestamp_seconds"] > 0
    assert "chaos_run_duration_seconds" in ours and "chaos_run_faults_injected" in ours
    statuses = {dict(labels)["status"]: v for (name, labels), v in samples.items()
                if name == "chaos_run_status" and wanted <= labels}
    assert statuses["passed"] == 0 and (statuses["deviated"] or statuses["aborted"]) == 1


def test_unreachable_pushgateway_is_reported_not_fatal(tmp_path: Path, prometheus: Prometheus
                                                       ) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = run(tmp_path, prometheus, Pushgateway("http://127.0.0.1:9"), "< 5s",
                     sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pushing run metrics failed" in result.stderr


def test_missing_auth_env_is_exit_2_before_anything(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(textwrap.dedent("""\
        apiVersion: chaos/v1
        kind: Experiment
        metadata: {name: prom-auth}
        spec:
          probes:
            - name: q
              prometheus: {url: "http://127.0.0.1:9", query: up, expect: "== 1",
                           bearerTokenEnv: CHAOS_TEST_TOKEN_NOT_SET}
        """))
    result = subprocess.run([sys.executable, "-m", "chaos", "run", str(exp)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "CHAOS_TEST_TOKEN_NOT_SET" in result.stderr
