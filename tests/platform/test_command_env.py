"""Command probes and rollbacks get a minimal environment, not the runner's.

The runner often holds cloud credentials in its environment; a command probe or rollback gets
only PATH, HOME, LANG, LC_ALL, TZ and TMPDIR (those that are set) plus its own ``env:``. Checked
with real programs that print or test their environment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chaos.model import load_experiment_text
from chaos.model.experiment import ProbeSpec
from chaos.platform.local.run import MINIMAL_ENV, run_argv
from chaos.probes.command import CommandProbeDriver
from chaos.targets.local import LocalPlatform

RUNNER_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/home/chaos-test", "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8", "TZ": "UTC", "TMPDIR": "/tmp",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
    "PYTHONPATH": "/somewhere",
}


@pytest.fixture
def runner_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in RUNNER_ENV.items():
        monkeypatch.setenv(name, value)


def _env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_minimal_environment_of_run_argv(runner_env: None) -> None:
    result = asyncio.run(run_argv(["env"], timeout=10, env={"EXTRA": "1"}, inherit_env=False))
    assert result.ok, result.stderr
    expected = {name: RUNNER_ENV[name] for name in MINIMAL_ENV} | {"EXTRA": "1"}
    assert _env_lines(result.stdout) == expected


def test_unset_variables_are_not_invented(runner_env: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ")
    monkeypatch.delenv("TMPDIR")
    result = asyncio.run(run_argv(["env"], timeout=10, inherit_env=False))
    assert set(_env_lines(result.stdout)) == {"PATH", "HOME", "LANG", "LC_ALL"}


def test_command_probe_gets_the_minimal_environment(runner_env: None) -> None:
    script = ('test -z "$AWS_SECRET_ACCESS_KEY" && test -z "$PYTHONPATH" '
              '&& test "$PASSED" = yes && test "$HOME" = /home/chaos-test')
    spec = ProbeSpec.model_validate({"name": "c", "command": {
        "argv": ["sh", "-c", script], "env": {"PASSED": "yes"}}})
    outcome = asyncio.run(CommandProbeDriver(spec).sample())
    assert outcome.ok, outcome.detail


def test_command_rollback_gets_the_minimal_environment(runner_env: None,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    exp = load_experiment_text(f"""\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: rollback-env}}
spec:
  probes: [{{name: t, tcp: {{host: 127.0.0.1, port: 1}}}}]
  rollbacks:
    - name: dump
      command: {{argv: [sh, -c, 'env > {out}'], env: {{PASSED: through}}}}
""")
    platform = LocalPlatform(exp)

    async def main() -> str:
        try:
            return await platform.run_rollback(exp.spec.rollbacks[0])
        finally:
            await platform.close()

    assert asyncio.run(main()).startswith("exit 0")
    env = _env_lines(out.read_text())
    env.pop("PWD", None)  # sh sets these itself
    env.pop("SHLVL", None)
    env.pop("OLDPWD", None)
    assert env == {name: RUNNER_ENV[name] for name in MINIMAL_ENV} | {"PASSED": "through"}
