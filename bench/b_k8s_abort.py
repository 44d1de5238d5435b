"""Time to abort on Kubernetes: from the breach to the fault verified gone, cpuStress on the real
test node, beside the same abort of a local cpuStress.

The real node (tests/cluster/realnode.py: containerd, runc, kubelet, kube-proxy) joins a kwok
control plane; the demo app runs on it. Each trial runs ``chaos run`` with a cpuStress fault on
the demo pod (a helper container running stress-ng) held 60 s, probing a loopback service every
250 ms through an SLO that breaks on the first failed sample. The benchmark watches the pod's
cgroup (as the kernel sees it, not the API) until stress-ng runs in it, then makes the service
fail at a uniformly random instant 2-4 s later, and polls the cgroup every 5 ms until no stress-ng
is left in it. Figures, each from the failure instant:

- ``stress gone``: the last stress-ng process gone from the pod's cgroup (observed by us);
- ``reverted``: the runner's own ``reverted`` record, written once it has seen the helper exit 0.

The same experiment with a local cpuStress (burner processes on this machine) gives the local
figure beside them. There is no peer: no open-source peer stresses a pod's CPU without a daemon
on the node (Chaos Mesh and LitmusChaos run one), and neither reverts on an SLO breach.
Needs root and the real node's requirements (``python3 tests/cluster/realnode.py check``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from common import ROOT, Ctx, Figure, k8s_conftest
from service import Service

BENCH = "k8s_abort"
HOLD_S = 60.0
FAIL_WINDOW = (2.0, 4.0)
INTERVAL_S = 0.25
RUN_TIMEOUT_S = HOLD_S + 90.0
NS = "bench-abort"


def _script_dir(env: str, script: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    out = subprocess.run(["bash", str(ROOT / "tests" / "cluster" / script)], capture_output=True,
                         text=True, check=True, timeout=5400).stdout
    return Path(out.strip().splitlines()[-1])


def _iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _experiment(url: str, fault: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "chaos/v1", "kind": "Experiment", "metadata": {"name": "bench-k8s-abort"},
        "spec": {
            "target": target,
            "baseline": "1s", "recovery": "1s",
            "probes": [{"name": "api", "interval": f"{INTERVAL_S * 1000:g}ms",
                        "http": {"url": url, "timeout": "2s", "expect": {"status": [200]}}}],
            "slos": [{"name": "up", "probe": "api", "consecutiveFailures": "< 1",
                      "abortAfter": 1}],
            "faults": [{"name": "burn", **fault, "at": "0s", "duration": f"{HOLD_S:g}s"}],
            "limits": {"maxDuration": "3m", "maxPods": 1},
        },
    }


class Watch:
    """Polls ``present()`` every 5 ms: once true, fails the service 2-4 s later; records when
    it turns false again after the failure."""

    def __init__(self, present: Callable[[], bool], service: Service, rng: random.Random) -> None:
        self.seen_at: float | None = None
        self.gone_at: float | None = None
        self._present, self._service = present, service
        self._delay = rng.uniform(*FAIL_WINDOW)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            now = time.time()
            if self.seen_at is None:
                if self._present():
                    self.seen_at = now
                    self._service.fail_at(now + self._delay)
            elif now >= self._service.deadline and not self._present():
                self.gone_at = time.time()
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _trial(ctx: Ctx, exp: dict[str, Any], present: Callable[[], bool], service: Service,
           rng: random.Random, trial_dir: Path, extra: list[str]) -> dict[str, float]:
    trial_dir.mkdir(parents=True)
    path = trial_dir / "experiment.yaml"
    path.write_text(json.dumps(exp))
    journal, state = trial_dir / "journal.json", trial_dir / "state"
    watch = Watch(present, service, rng)
    try:
        with (trial_dir / "stderr").open("wb") as err:
            rc = subprocess.run([ctx.chaos, "run", str(path), "--journal", str(journal),
                                 "--state-dir", str(state), "--log-format", "json", *extra],
                                check=False, stdout=subprocess.DEVNULL, stderr=err,
                                timeout=RUN_TIMEOUT_S, cwd=trial_dir).returncode
        deadline = time.time() + 10
        while watch.gone_at is None and time.time() < deadline:
            time.sleep(0.01)
    finally:
        watch.close()
    failed_at = service.deadline
    service.reset()
    record = json.loads(journal.read_text()) if journal.exists() else {}
    tail = "\n".join((trial_dir / "stderr").read_text(errors="replace").splitlines()[-12:])
    if rc != 3 or (record.get("abort") or {}).get("slo") != "up":
        raise RuntimeError(f"{trial_dir}: expected exit 3 by SLO 'up', got {rc}, "
                           f"{record.get('status')}:\n{tail}")
    if watch.seen_at is None or watch.gone_at is None:
        raise RuntimeError(f"{trial_dir}: the stress was never seen or never went away:\n{tail}")
    wal = [json.loads(ln) for p in (state / "runs").glob("*.jsonl")
           for ln in p.read_text().splitlines() if ln.strip()]
    reverted = [r for r in wal if r.get("type") == "reverted"]
    return {
        "gone_ms": (watch.gone_at - failed_at) * 1000,
        "reverted_ms": (_iso(reverted[0]["time"]) - failed_at) * 1000,
        "detected_ms": (_iso(record["abort"]["at"]) - failed_at) * 1000,
    }


def _burners() -> bool:
    needle = b"chaos.platform.local._burner"
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (p / "cmdline").read_bytes():
                    return True
    return False


def run(ctx: Ctx) -> list[Figure]:
    sys.path.insert(0, str(ROOT / "tests" / "cluster"))
    import realnode

    missing = realnode.missing_requirements()
    if missing:
        raise RuntimeError("the real node cannot start here: " + "; ".join(missing))
    kc = k8s_conftest()
    rng = random.Random(7)
    n = ctx.trials(12, 3)
    service = Service()
    base = Path(tempfile.mkdtemp(prefix="k8s-abort-", dir=ctx.workdir))
    local: list[dict[str, float]] = []
    kube: list[dict[str, float]] = []
    try:
        for i in range(n):
            exp = _experiment(service.url("/k8s"), {"cpuStress": {"workers": 1, "load": "50%"}},
                              {"platform": "local"})
            exp["spec"]["limits"] = {"maxDuration": "3m"}
            local.append(_trial(ctx, exp, _burners, service, rng, base / f"local-{i}", []))
        cluster = kc.start_cluster(_script_dir("CHAOS_TESTBIN", "build.sh"), base / "cluster")
        try:
            node = realnode.start(
                kwok_workdir=Path(cluster.workdir), cluster_name=cluster.name,
                node_bin=_script_dir("CHAOS_NODEBIN", "build-node.sh"),
                control_bin=Path(cluster.bin_dir),
                images_dir=_script_dir("CHAOS_IMAGES", "build-images.sh"), base_dir=base)
            try:
                kube = _measure_kube(ctx, cluster, realnode, service, rng, base)
            finally:
                problems = node.stop()
                if problems:
                    print(f"   real node left: {problems}", file=sys.stderr)
        finally:
            cluster.delete()
    finally:
        service.close()

    def col(rows: list[dict[str, float]], key: str) -> list[float]:
        return [r[key] for r in rows]

    p95_1s = lambda ours, _peer: ours <= 1000  # noqa: E731
    return [
        Figure(BENCH, "k8s cpuStress: breach -> stress gone from the pod's cgroup", "ms",
               col(kube, "gone_ms"), target_text="p95 <= 1000 ms", target=p95_1s,
               target_stat="p95", notes="real node; observed in the kernel's cgroup"),
        Figure(BENCH, "k8s cpuStress: breach -> reverted record (the helper said reverted)", "ms",
               col(kube, "reverted_ms"), target_text="p95 <= 1000 ms", target=p95_1s,
               target_stat="p95"),
        Figure(BENCH, "k8s cpuStress: breach -> abort decided", "ms", col(kube, "detected_ms")),
        Figure(BENCH, "local cpuStress: breach -> burners gone (beside)", "ms",
               col(local, "gone_ms"), target_text="p95 <= 1000 ms", target=p95_1s,
               target_stat="p95"),
        Figure(BENCH, "local cpuStress: breach -> reverted record", "ms",
               col(local, "reverted_ms")),
    ]


def _measure_kube(ctx: Ctx, cluster: Any, realnode: ModuleType, service: Service,
                  rng: random.Random, base: Path) -> list[dict[str, float]]:
    cluster.kubectl("create", "namespace", NS)
    pod_spec = {
        **realnode.REAL_NODE_SCHEDULING,
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "app", "image": realnode.IMAGES["demo-app"],
                        "imagePullPolicy": "Never"}],
    }
    (base / "app.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}}, "spec": pod_spec}))
    cluster.kubectl("apply", "-f", str(base / "app.yaml"))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", NS, "--timeout=90s",
                    timeout=100)
    pod = json.loads(cluster.kubectl("get", "pod", "web", "-n", NS, "-o", "json").stdout)
    cg = (Path("/sys/fs/cgroup/pids/chaos-node/kubepods/besteffort")
          / f"pod{pod['metadata']['uid']}")

    def stress() -> bool:
        for f in cg.rglob("cgroup.procs"):
            for pid in f.read_text().split():
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "stress-ng":
                        return True
        return False

    rows = []
    for i in range(ctx.trials(12, 3)):
        fault = {"cpuStress": {"selector": {"labels": {"app": "web"}, "mode": "one"},
                               "workers": 1, "load": "50%", "image": realnode.IMAGES["helper"]}}
        exp = _experiment(service.url("/k8s"), fault, {"platform": "kubernetes", "namespace": NS})
        rows.append(_trial(ctx, exp, stress, service, rng, base / f"kube-{i}",
                           ["--kubeconfig", cluster.kubeconfig]))
        print(f"   k8s trial {i}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows
