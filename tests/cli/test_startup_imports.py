"""Start-up stays light: `chaos --help` and `chaos validate` do not import what only a run needs.

A test on imports, not on wall time: each case runs the real CLI entry point (``chaos.cli.main``)
in a fresh interpreter and inspects ``sys.modules`` afterwards. A module listed here that shows up
means an import moved to module level somewhere on the path; make it lazy again (import inside
the function that needs it) rather than dropping it from the list.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: startup}
spec:
  probes:
    - name: up
      interval: 250ms
      http: {url: "http://127.0.0.1:9/", timeout: 1s}
  slos:
    - {name: available, probe: up, successRate: ">= 99%", window: 5s}
  faults:
    - name: pause
      processPause: {target: {pidfile: /tmp/startup.pid}}
      at: 1s
      duration: 2s
"""

# Invokes the CLI as the `chaos` script does, then writes the exit code and sys.modules to a file
# (stdout and stderr belong to the CLI).
PROBE = """\
import json, sys
out, sys.argv = sys.argv[1], ["chaos", *sys.argv[2:]]
import chaos.cli
early = sorted(sys.modules)
code = None
try:
    chaos.cli.main()
except SystemExit as exc:
    code = exc.code
with open(out, "w") as fh:
    json.dump({"code": code, "early": early, "modules": sorted(sys.modules)}, fh)
"""

# Only a run (or plan/recover/report) needs these. Validating loads the fault and probe kind
# modules (they own their parameter models) but none of the drivers they use to run.
RUN_ONLY = (
    "asyncio", "httpx", "httpcore", "anyio", "h11", "structlog", "tenacity", "kubernetes", "ssl",
    "chaos.cli.runner", "chaos.cli.output", "chaos.engine", "chaos.faults._ephemeral",
    "chaos.faults.recovery", "chaos.targets", "chaos.platform", "chaos.journal.wal",
    "chaos.journal.outcome", "chaos.reporting",
)
# Nor does help need the experiment models, YAML or pydantic.
MODEL = ("pydantic", "pydantic_core", "yaml", "chaos.model")
# Rich renders help and usage errors only.
HELP_ONLY = ("rich", "markdown_it", "pygments")


def _run_cli(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert out.exists(), done.stderr
    data: dict[str, object] = json.loads(out.read_text())
    data["stdout"], data["stderr"] = done.stdout, done.stderr
    return data


def _loaded(modules: object, banned: tuple[str, ...]) -> list[str]:
    assert isinstance(modules, list)
    return [m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)]


def test_entry_point_installs_signal_handlers_before_typer(tmp_path: Path) -> None:
    # chaos.cli must stay import-light: its handlers are installed before anything heavy loads.
    data = _run_cli(tmp_path, "version")
    assert data["code"] in (0, None)
    assert _loaded(data["early"], ("typer", "pydantic", "rich", "yaml", "chaos.cli.app")) == []


def test_help_imports_no_models_and_no_engine(tmp_path: Path) -> None:
    data = _run_cli(tmp_path, "--help")
    assert data["code"] in (0, None), data["stderr"]
    assert "validate" in str(data["stdout"])
    assert _loaded(data["modules"], RUN_ONLY + MODEL) == []


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_validate_imports_models_but_no_engine(tmp_path: Path, valid: bool) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(GOOD if valid else GOOD.replace("interval: 250ms", "interval: 250"))
    data = _run_cli(tmp_path, "validate", str(path))
    assert data["code"] == (0 if valid else 2), data["stderr"]
    assert "chaos.model.experiment" in data["modules"]  # it really validated
    assert _loaded(data["modules"], RUN_ONLY + HELP_ONLY) == []
