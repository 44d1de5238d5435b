"""What `chaos plan` prints for every rollback kind, and `chaos kinds`."""

from __future__ import annotations

import subprocess
import sys

from chaos.faults.registry import FAULT_KINDS
from chaos.model import load_experiment_text
from chaos.objectives import OBJECTIVES
from chaos.probes.registry import PROBE_KINDS
from chaos.reporting.summary import render_plan

EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: plan}
spec:
  target: {platform: kubernetes, namespace: shop}
  probes:
    - {name: web, http: {url: "http://web.shop/health"}}
  rollbacks:
    - {name: restore, kubernetes: {scale: {name: checkout, replicas: 3}}}
    - {name: notify, http: {url: "http://hooks.local/done"}}
    - {name: log, command: {argv: [logger, done]}}
"""


def test_plan_names_every_rollback_including_a_scale() -> None:
    text = render_plan(load_experiment_text(EXPERIMENT), [])
    lines = text.splitlines()
    assert "  restore: scale Deployment checkout to 3 replica(s)" in lines
    assert "  notify: POST http://hooks.local/done" in lines
    assert "  log: logger done" in lines
    assert not any(line.rstrip().endswith(":") and line.startswith("  ") for line in lines
                   if line.strip().startswith(("restore", "notify", "log"))), text


def test_kinds_lists_every_registered_kind() -> None:
    out = subprocess.run([sys.executable, "-m", "chaos", "kinds"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for key in ([k.key for k in FAULT_KINDS] + [p.key for p in PROBE_KINDS]
                + [o.key for o in OBJECTIVES]):
        assert f"  {key} " in out
