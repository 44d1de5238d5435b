"""Shared by the real-node tests: the demo app on the real node, the chaos CLI, and what the
host sees of a pod (its cgroup CPU time, its processes)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from realnode import IMAGES, REAL_NODE_SCHEDULING

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def wait(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = probe()
        except Exception as exc:
            got, last = None, exc
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def events_dir(tmp_path: Path) -> Path:
    """A host folder the demo app (uid 65532) writes its SIGTERM/EXIT lines to (hostPath)."""
    d = tmp_path / "events"
    d.mkdir()
    os.chown(d, 65532, 65532)
    return d


def demo_app(ns: str, *, name: str = "web", replicas: int = 1, events: Path | None = None,
             shutdown_delay: str = "2s", grace: int = 10, pod_security: dict[str, Any] | None = None,
             extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": name, **(extra_labels or {})}
    container: dict[str, Any] = {
        "name": "app",
        "image": IMAGES["demo-app"],
        "imagePullPolicy": "Never",
        "env": [{"name": "SHUTDOWN_DELAY", "value": shutdown_delay}],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1,
                           "failureThreshold": 1},
    }
    pod: dict[str, Any] = {
        **REAL_NODE_SCHEDULING,
        "terminationGracePeriodSeconds": grace,
        "containers": [container],
    }
    if pod_security:
        pod["securityContext"] = pod_security
    if events is not None:
        container["env"].append({"name": "DEMO_EVENTS_DIR", "value": "/events"})
        container["volumeMounts"] = [{"name": "events", "mountPath": "/events"}]
        pod["volumes"] = [{"name": "events", "hostPath": {"path": str(events), "type": "Directory"}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def apply(cluster: Any, obj: dict[str, Any] | list[dict[str, Any]], tmp_path: Path) -> None:
    docs = obj if isinstance(obj, list) else [obj]
    f = tmp_path / f"apply-{time.monotonic_ns()}.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    cluster.kubectl("apply", "-f", str(f))


def pods(cluster: Any, ns: str, selector: str = "app=web") -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout
    return list(json.loads(out)["items"])


def ready_pods(cluster: Any, ns: str, selector: str = "app=web") -> list[dict[str, Any]]:
    def is_ready(p: dict[str, Any]) -> bool:
        conds = p.get("status", {}).get("conditions", [])
        return p["metadata"].get("deletionTimestamp") is None and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conds)

    return [p for p in pods(cluster, ns, selector) if is_ready(p)]


def wait_ready(cluster: Any, ns: str, n: int, selector: str = "app=web",
               timeout: float = 90) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        got = ready_pods(cluster, ns, selector)
        return got if len(got) >= n else None

    try:
        return wait(f"{n} Ready pod(s) {selector} in {ns}", probe, timeout)
    except AssertionError:
        print(cluster.kubectl("describe", "pods", "-n", ns, "-l", selector, check=False).stdout,
              file=sys.stderr)
        raise


def chaos(cluster: Any, tmp_path: Path, text: str, *args: str, timeout: float = 240,
          background: bool = False) -> Any:
    exp = tmp_path / "exp.yaml"
    exp.write_text(text)
    argv = [sys.executable, "-m", "chaos", "run", str(exp), "--kubeconfig", cluster.kubeconfig,
            "--journal", str(tmp_path / "run.json"), "--state-dir", str(tmp_path / "state"),
            "--log-format", "json", *args]
    if background:
        return subprocess.Popen(argv, stdout=open(tmp_path / "out.log", "w"),
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def journal(tmp_path: Path) -> dict[str, Any]:
    p = tmp_path / "run.json"
    return json.loads(p.read_text()) if p.exists() else {}


# ------------------------------------------------------------------ what the host sees of a pod

def pod_cgroup(pod: dict[str, Any], controller: str = "cpuacct") -> Path:
    """The pod's cgroup on the real node (cgroupfs driver, cgroup root /chaos-node)."""
    uid = pod["metadata"]["uid"]
    qos = pod["status"].get("qosClass", "BestEffort").lower()
    base = Path("/sys/fs/cgroup") / controller / "chaos-node" / "kubepods"
    found = [base / f"pod{uid}"] if qos == "guaranteed" else [base / qos / f"pod{uid}"]
    for p in found:
        if p.is_dir():
            return p
    raise AssertionError(f"no cgroup for pod {pod['metadata']['name']} under {base}")


def cpu_seconds(cgroup: Path) -> float:
    return int((cgroup / "cpuacct.usage").read_text()) / 1e9


def cpu_rate(cgroup: Path, seconds: float = 2.0) -> float:
    """Cores used by the cgroup over ``seconds`` (1.0 = one core busy)."""
    a, t0 = cpu_seconds(cgroup), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(cgroup) - a) / (time.monotonic() - t0)


def cgroup_processes(cgroup: Path) -> list[str]:
    """The command names of every process in the cgroup and below."""
    out = []
    for f in cgroup.rglob("cgroup.procs"):
        for pid in f.read_text().split():
            with contextlib.suppress(OSError):
                out.append(Path(f"/proc/{pid}/comm").read_text().strip())
    return out
