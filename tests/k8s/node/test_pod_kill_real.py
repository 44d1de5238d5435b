"""podKill on the real node: the app's process gets SIGTERM and the grace period to finish, the
ReplicaSet's replacement turns Ready through a real readiness probe, the recovery SLO passes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import realnode
from realnode_kit import apply, chaos, demo_app, events_dir, journal, wait, wait_ready

pytestmark = [pytest.mark.k8s, pytest.mark.realnode]


def experiment(ns: str, fault: str, *, recovery: str = "25s") -> str:
    return f"""\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: real-pod-kill}}
spec:
  target: {{platform: kubernetes, namespace: {ns}}}
  baseline: 2s
  recovery: {recovery}
  probes:
    - name: all-back
      interval: 500ms
      kubernetes: {{deployment: {{name: web, available: "== desired"}}}}
  slos:
    - {{name: recovered, probe: all-back, successRate: ">= 20%", window: 10s}}
  faults:
{fault}
  limits: {{maxDuration: 3m, maxPods: 1}}
"""


def _events(d: Path) -> list[tuple[datetime, str, str]]:
    f = d / "events.log"
    out = []
    for ln in (f.read_text().splitlines() if f.exists() else []):
        ts, what, host, *_ = ln.split()
        out.append((datetime.fromisoformat(ts.replace("Z", "+00:00")), what, host))
    return out


def test_pod_kill_sends_sigterm_honours_grace_and_the_replacement_turns_ready(
        kube_cluster: Any, real_node: realnode.RealNode, k8s_namespace: str, tmp_path: Path) -> None:
    ns = k8s_namespace
    ev = events_dir(tmp_path)
    apply(kube_cluster, demo_app(ns, replicas=2, events=ev, shutdown_delay="3s", grace=20), tmp_path)
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in wait_ready(kube_cluster, ns, 2)}
    fault = """\
    - name: kill-one
      podKill: {selector: {labels: {app: web}, mode: one}}
      at: 1s"""
    result = chaos(kube_cluster, tmp_path, experiment(ns, fault))
    assert result.returncode == 0, result.stdout + result.stderr
    data = journal(tmp_path)
    assert data["status"] == "passed"
    # The app saw SIGTERM, kept serving for its shutdown delay, and exited by itself: the
    # kubelet honoured the grace period instead of SIGKILLing it.
    events = wait("the killed pod's EXIT line", lambda: [e for e in _events(ev) if e[1] == "EXIT"], 30)
    sigterm = [e for e in _events(ev) if e[1] == "SIGTERM"]
    assert len(sigterm) == 1 and len(events) == 1, _events(ev)
    killed = sigterm[0][2]
    assert killed in before and events[0][2] == killed
    assert (events[0][0] - sigterm[0][0]).total_seconds() >= 2.9
    # The replacement is a new pod, Ready by the kubelet's readiness probe.
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in wait_ready(kube_cluster, ns, 2)}
    assert killed not in after
    assert len(set(after.values()) - set(before.values())) == 1
    slo = {s["name"]: s for s in data["slos"]}
    assert slo["recovered"]["verdict"] == "passed"
