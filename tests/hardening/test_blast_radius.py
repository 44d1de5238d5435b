"""Kubernetes blast radius at validation: selectors that would match everything, the default
pod cap, protected namespaces for writes too. The real CLI (`chaos validate`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening_kit import chaos

from chaos.model import load_experiment_text

BASE = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: k}
spec:
  target: {platform: kubernetes, namespace: shop}
  probes:
    - {name: up, kubernetes: {deployment: {name: web}}}
  faults:
    - name: kill
      podKill: {selector: SELECTOR}
"""


@pytest.mark.parametrize(("selector", "message"), [
    ("{labels: {'app!': ''}}", "'app!' is not a label key"),
    ("{labels: {'app,tier': web}}", "is not a label key"),
    ("{labels: {app: 'web,other'}}", "is not a label value for 'app'"),
    ("{fieldSelector: ''}", "an empty one would select every pod"),
    ("{fieldSelector: 'metadata.name'}", "is not a list of field=value terms"),
])
def test_a_selector_that_would_match_everything_is_refused(tmp_path: Path, selector: str,
                                                           message: str) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE.replace("SELECTOR", selector))
    result = chaos(tmp_path, "validate", str(exp))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "exp.yaml:10:" in result.stderr


def test_max_pods_has_a_safe_default() -> None:
    exp = load_experiment_text(BASE.replace("SELECTOR", "{labels: {app: web}, mode: all}"))
    assert exp.spec.limits.max_pods == 10


def test_a_rollback_into_a_protected_namespace_is_refused(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(BASE.replace("SELECTOR", "{labels: {app: web}}") + """\
  rollbacks:
    - name: scale-dns
      kubernetes: {scale: {name: coredns, replicas: 0, namespace: kube-system}}
""")
    result = chaos(tmp_path, "validate", str(exp))
    assert result.returncode == 2
    assert "scales a workload in protected namespace 'kube-system'" in result.stderr
    opted_in = exp.read_text().replace("namespace: shop}",
                                       "namespace: shop, allowProtectedNamespaces: true}")
    exp.write_text(opted_in)
    assert chaos(tmp_path, "validate", str(exp)).returncode == 0
