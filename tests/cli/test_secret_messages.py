"""Validation messages never print a value that came from `${VAR}`: they name the variable.

A value read from the environment may be a secret (a token in a URL, a password); when it makes
a field invalid, the message shows the field as written (`http://${SECRET_HOST}/health`), not
as expanded. Through the real CLI, with the secret in the real environment; the whole output
(stdout and stderr) is searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_kit import GOOD

SECRET = "s3cr3t-hunter2"  # never to be printed


def chaos(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env}, stdin=subprocess.DEVNULL)


CASES = [
    # (id, replace-from, replace-to, {VAR: value}, what the message shows instead)
    ("url-bad-port", '"http://127.0.0.1:9/health"', '"http://${SECRET_HOST}/health"',
     {"SECRET_HOST": f"{SECRET}:99999"}, "'http://${SECRET_HOST}/health' is not an http(s) URL"),
    ("url-not-http", '"http://127.0.0.1:9/health"', '"${SECRET_URL}"',
     {"SECRET_URL": f"ftp://user:{SECRET}@host/"}, "'${SECRET_URL}' is not an http(s) URL"),
    ("literal", "apiVersion: chaos/v1", "apiVersion: ${API}", {"API": f"chaos/{SECRET}"},
     "Input should be 'chaos/v1', got '${API}'"),
    ("name-pattern", "metadata: {name: t}", 'metadata: {name: "x-${SUFFIX}"}',
     {"SUFFIX": SECRET.upper()}, "'x-${SUFFIX}' is not a valid name"),
    ("duration", "interval: 250ms", "interval: ${IV}", {"IV": f"250{SECRET}"},
     "'${IV}' is not a duration"),
    ("percentage", '">= 99%"', '">= ${PCT}"', {"PCT": f"{SECRET}%"}, "${PCT}"),
    ("short-secret-at-its-position", "interval: 250ms", "interval: ${IV}", {"IV": "xy"},
     "'${IV}' is not a duration"),
    ("reference", "probe: web", 'probe: "${PROBE}"', {"PROBE": f"web-{SECRET}"},
     "refers to probe '${PROBE}', which is not defined"),
    ("header-with-bad-neighbour", "timeout: 1s}",
     'timeout: 1s, headers: {Authorization: "Bearer ${TOKEN}"}, method: "${TOKEN}"}',
     {"TOKEN": SECRET}, "${TOKEN}"),
]


@pytest.mark.parametrize(("case", "old", "new", "env", "shown"), CASES, ids=[c[0] for c in CASES])
def test_an_invalid_value_from_the_environment_is_named_not_shown(
    tmp_path: Path, case: str, old: str, new: str, env: dict[str, str], shown: str,
) -> None:
    assert old in GOOD, case
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace(old, new, 1))
    result = chaos("validate", str(path), env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    output = result.stdout + result.stderr
    for value in env.values():
        assert value not in output, output
    assert SECRET not in output and SECRET.upper() not in output, output
    assert shown in result.stderr, result.stderr
    assert f"{path}:" in result.stderr


def test_a_secret_carried_into_a_template_is_not_shown(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "t.yaml").write_text(
        "kind: ProbeTemplate\nparams:\n  url: {}\nprobe:\n  interval: 1s\n"
        '  http: {url: "{{url}}", timeout: 1s}\n')
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace(
        '    - name: web\n      http: {url: "http://127.0.0.1:9/health", timeout: 1s}\n'
        "      interval: 250ms\n",
        '    - use: probes/t.yaml\n      name: web\n      with: {url: "${SECRET_URL}"}\n'))
    result = chaos("validate", str(path), env={"SECRET_URL": f"http://x:{SECRET}@h:99999/"})
    assert result.returncode == 2, result.stdout
    assert SECRET not in result.stdout + result.stderr, result.stderr
    assert "${SECRET_URL}" in result.stderr, result.stderr
    assert f"{tmp_path / 'probes' / 't.yaml'}:6:" in result.stderr  # located in the template


def test_an_unset_variable_is_still_named(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD.replace('"http://127.0.0.1:9/health"', '"http://${NOPE_UNSET}/x"'))
    env = {k: v for k, v in os.environ.items() if k != "NOPE_UNSET"}
    result = subprocess.run([sys.executable, "-m", "chaos", "validate", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert "environment variable NOPE_UNSET is not set" in result.stderr
