"""No secret reaches any output of a run, the way the review found them leaking.

Known secrets are put in every place an experiment holds one: a Prometheus bearer token with a
trailing newline (httpx echoes it in "Illegal header value"), basicAuth variables, a password in
URL userinfo, tokens in query strings, a header, a webhook rollback's path and query, a command's
argv (a program that echoes it, a program that cannot be spawned), a variable passed to a
rollback's environment, and the Pushgateway's credentials. The real CLI runs against local servers
that fail every request (and echo what they were sent), with every output turned on; every output
file and stream is then searched for every secret, also in the forms derived from them (base64 of
``user:password``, as in a Basic auth header).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from loopback_servers import closed_port, failing_server

pytestmark = pytest.mark.timeout(120)

SECRETS = {
    "CHAOS_T_PROM_TOKEN": "PromTok3n-a81c\n",  # a trailing newline: an illegal header value
    "CHAOS_T_PROM_USER": "PromUser-b72d",
    "CHAOS_T_PROM_PASS": "PromPass-c63e",
    "CHAOS_T_URL_PASS": "UrlPass-d54f",
    "CHAOS_T_QUERY_TOKEN": "QueryTok-e45a",
    "CHAOS_T_HEADER_KEY": "HeaderKey-f36b",
    "CHAOS_T_ARGV_SECRET": "ArgvSecret-a27c",
    "CHAOS_T_WEBHOOK_PATH": "WebhookPath-b18d",
    "CHAOS_T_CMD_ENV": "CmdEnv-c09e",
}
PUSH_PASSWORD = "PgPass-d90f"

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: secrets-everywhere}}
spec:
  baseline: 1500ms
  recovery: 500ms
  secrets: [CHAOS_T_ARGV_SECRET, CHAOS_T_CMD_ENV]
  probes:
    - name: prom-token
      interval: 500ms
      prometheus: {{url: "{fail}", query: up, expect: "== 1", bearerTokenEnv: CHAOS_T_PROM_TOKEN}}
    - name: prom-basic
      interval: 500ms
      prometheus:
        url: "{fail}"
        query: up
        expect: "== 1"
        basicAuth: {{usernameEnv: CHAOS_T_PROM_USER, passwordEnv: CHAOS_T_PROM_PASS}}
    - name: prom-userinfo
      interval: 500ms
      prometheus:
        url: "http://promuser:${{CHAOS_T_URL_PASS}}@127.0.0.1:{closed}/prom?tenant=${{CHAOS_T_QUERY_TOKEN}}"
        query: up
        expect: "== 1"
    - name: api
      interval: 500ms
      http:
        url: "http://apiuser:${{CHAOS_T_URL_PASS}}@{fail_host}/health?apikey=${{CHAOS_T_QUERY_TOKEN}}"
        headers: {{X-Api-Key: "${{CHAOS_T_HEADER_KEY}}"}}
    - name: echo-argv
      interval: 500ms
      command:
        argv: ["{python}", "-c", "import sys; print('login failed for', sys.argv[1], file=sys.stderr); sys.exit(1)", "${{CHAOS_T_ARGV_SECRET}}"]
    - name: spawn-fails
      interval: 500ms
      command: {{argv: ["{not_a_dir}/prog", "--password=${{CHAOS_T_ARGV_SECRET}}"]}}
  rollbacks:
    - name: webhook
      http:
        url: "{fail}/T0K3N-${{CHAOS_T_WEBHOOK_PATH}}?token=${{CHAOS_T_QUERY_TOKEN}}"
        headers: {{Authorization: "Bearer ${{CHAOS_T_HEADER_KEY}}"}}
        timeout: 2s
    - name: notify
      command: {{argv: ["notify-send", "--token", "${{CHAOS_T_ARGV_SECRET}}"], cwd: "{tmp}/no-such-dir"}}
    - name: spawn-fails
      command: {{argv: ["{not_a_dir}/rollback", "${{CHAOS_T_ARGV_SECRET}}"]}}
    - name: echo-env
      command:
        argv: ["{python}", "-c", "import os, sys; print('bad', os.environ['CHAOS_T_CMD_ENV'], file=sys.stderr); sys.exit(2)"]
        env: {{CHAOS_T_CMD_ENV: "${{CHAOS_T_CMD_ENV}}"}}
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def needles() -> dict[str, str]:
    """Every string that must not appear anywhere, named for the failure message."""
    out = {name: value.strip() for name, value in SECRETS.items()}
    out["pushgateway password"] = PUSH_PASSWORD
    s = {k: v.strip() for k, v in SECRETS.items()}
    out["basicAuth header"] = _b64(f"{s['CHAOS_T_PROM_USER']}:{s['CHAOS_T_PROM_PASS']}")
    out["prometheus userinfo header"] = _b64(f"promuser:{s['CHAOS_T_URL_PASS']}")
    out["http probe userinfo header"] = _b64(f"apiuser:{s['CHAOS_T_URL_PASS']}")
    out["pushgateway userinfo header"] = _b64(f"pguser:{PUSH_PASSWORD}")
    return out


def test_no_secret_in_any_output(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    with failing_server() as fail:
        exp = tmp_path / "secrets.yaml"
        exp.write_text(EXPERIMENT.format(
            fail=fail, fail_host=fail.removeprefix("http://"), closed=closed_port(),
            python=sys.executable, not_a_dir=not_a_dir, tmp=tmp_path))
        pushgateway = fail.replace("http://", f"http://pguser:{PUSH_PASSWORD}@")
        out = {name: tmp_path / name for name in
               ("journal.json", "report.html", "junit.xml", "report.md")}
        result = subprocess.run(
            [sys.executable, "-m", "chaos", "run", str(exp), "--state-dir", str(tmp_path / "s"),
             "--journal", str(out["journal.json"]), "--report-html", str(out["report.html"]),
             "--junit", str(out["junit.xml"]), "--markdown", str(out["report.md"]),
             "--log-format", "json", "-v", "--pushgateway", pushgateway],
            capture_output=True, text=True, timeout=90, env={**os.environ, **SECRETS})
    assert result.returncode in (0, 1), result.stdout + result.stderr
    outputs = {"stdout": result.stdout, "stderr": result.stderr}
    outputs.update({name: path.read_text() for name, path in out.items()})
    for wal in sorted((tmp_path / "s").rglob("*.jsonl")):
        outputs[f"state {wal.name}"] = wal.read_text()
    leaks = [f"{what} in {where}" for what, needle in needles().items()
             for where, text in outputs.items() if needle in text]
    assert not leaks, "secrets leaked: " + "; ".join(leaks)

    # And the run really went through every place a secret could leak from.
    record = json.loads(out["journal.json"].read_text())
    details = {name: {s["detail"] for s in samples} for name, samples in record["probes"].items()}
    assert any("Illegal header value" in d and "***" in d for d in details["prom-token"]), details
    assert any("HTTP 404" in d for d in details["prom-basic"]), details
    assert any(d.startswith("prometheus http://127.0.0.1:") and "connection refused" in d
               for d in details["prom-userinfo"]), details
    assert details["api"] == {"status 500 (expected 200)"}, details
    assert any("login failed for ***" in d for d in details["echo-argv"]), details
    assert any(d.startswith("cannot run") and "prog" in d for d in details["spawn-fails"]), details
    rollbacks = {r["name"]: r for r in record["rollbacks"]}
    assert not any(r["ok"] for r in rollbacks.values()), rollbacks
    assert rollbacks["webhook"]["detail"] == f"POST {fail}/… answered 500", rollbacks
    assert "working directory" in rollbacks["notify"]["detail"], rollbacks
    assert "bad ***" in rollbacks["echo-env"]["detail"], rollbacks
    assert "error: pushing run metrics failed" in result.stderr, result.stderr
    assert "HTTP 500" in result.stderr, result.stderr


def test_plain_run_output_is_unchanged_without_secrets(tmp_path: Path) -> None:
    """Redaction hides secrets, not ordinary details: a run with none shows its URLs' paths."""
    with failing_server() as fail:
        exp = tmp_path / "plain.yaml"
        exp.write_text(textwrap.dedent(f"""\
            apiVersion: chaos/v1
            kind: Experiment
            metadata: {{name: plain}}
            spec:
              baseline: 600ms
              recovery: 200ms
              probes:
                - {{name: prom, interval: 300ms,
                    prometheus: {{url: "{fail}/prefix", query: up, expect: "== 1"}}}}
              rollbacks:
                - {{name: ping, http: {{url: "{fail}/ping", timeout: 2s}}}}
            """))
        result = subprocess.run(
            [sys.executable, "-m", "chaos", "run", str(exp), "--state-dir", str(tmp_path / "s"),
             "--journal", str(tmp_path / "j.json"), "--log-format", "json"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    record = json.loads((tmp_path / "j.json").read_text())
    details = {s["detail"] for s in record["probes"]["prom"]}
    assert any(f"is {fail}/prefix the Prometheus base URL?" in d for d in details), details
    assert record["rollbacks"][0]["detail"] == f"POST {fail}/… answered 500"


@pytest.mark.parametrize("url", [
    f"http://pguser:{PUSH_PASSWORD}@pushgateway:99999/x",  # a bad port
    f"ftp://pguser:{PUSH_PASSWORD}@pushgateway/x?token={PUSH_PASSWORD}",  # not http(s)
])
def test_a_refused_pushgateway_flag_is_not_echoed_with_its_password(
        tmp_path: Path, url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "run", "experiments/demo-process-kill.yaml",
         "--state-dir", str(tmp_path / "s"), "--pushgateway", url],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--pushgateway must be an http(s) URL" in result.stderr, result.stderr
    assert "pushgateway" in result.stderr.split("URL:", 1)[1], result.stderr
    assert PUSH_PASSWORD not in result.stdout + result.stderr, result.stderr
    assert "pguser" not in result.stderr, result.stderr


def test_plan_masks_the_secrets_it_would_use(tmp_path: Path) -> None:
    """`chaos plan` shows what a run would touch and call, without the secrets it would use."""
    exp = tmp_path / "plan.yaml"
    exp.write_text(textwrap.dedent("""\
        apiVersion: chaos/v1
        kind: Experiment
        metadata: {name: plan-secrets}
        spec:
          secrets: [CHAOS_T_ARGV_SECRET]
          probes:
            - {name: api, interval: 1s,
               http: {url: "http://u:${CHAOS_T_URL_PASS}@127.0.0.1:9/x?token=${CHAOS_T_QUERY_TOKEN}"}}
            - {name: db, interval: 1s,
               command: {argv: [check-db, --password, "${CHAOS_T_ARGV_SECRET}"]}}
          rollbacks:
            - {name: hook, http: {url: "http://127.0.0.1:9/hooks/${CHAOS_T_WEBHOOK_PATH}"}}
        """))
    env = {**os.environ, **{k: v.strip() for k, v in SECRETS.items()}}
    result = subprocess.run([sys.executable, "-m", "chaos", "plan", str(exp)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "http://127.0.0.1:9/x?…" in result.stdout, result.stdout
    assert "command check-db --password *** every 1s" in result.stdout, result.stdout
    assert "hook: POST http://127.0.0.1:9/…" in result.stdout, result.stdout
    for name in ("CHAOS_T_URL_PASS", "CHAOS_T_QUERY_TOKEN", "CHAOS_T_ARGV_SECRET",
                 "CHAOS_T_WEBHOOK_PATH"):
        assert SECRETS[name].strip() not in result.stdout + result.stderr, (name, result.stdout)
