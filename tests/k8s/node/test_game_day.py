"""The game day, end to end on the real node: the Helm chart installed with one experiment, a Job
started from its CronJob, the runner image in a pod with the chart's ServiceAccount (in-cluster
configuration, no kubeconfig), the fault on a demo-app pod, the Events, the run metrics in a real
Pushgateway and the journal on the state volume (a PersistentVolumeClaim by default). Then a run
SIGKILLed mid-fault: the next Job's `chaos recover` init step finds its journal on the volume and
ends the fault long before the fault's own deadline.

The test cluster has no volume provisioner: each test creates a hostPath PersistentVolume bound
to the chart's claim, backed by a folder on this host, and reads the journals from there. The
folder is made the way fsGroup leaves a fresh volume (root:65532, group-writable, setgid), which
is what the runner's state dir must cope with on a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import realnode
import yaml
from realnode_kit import (
    REPO,
    apply,
    cgroup_processes,
    demo_app,
    pod_cgroup,
    pods,
    wait,
    wait_ready,
)

from chaos.faults._ephemeral import container_names

# Bounded: a Job ends within JOB_TIMEOUT_S; the first test may also wait for the session's node.
pytestmark = [pytest.mark.k8s, pytest.mark.realnode, pytest.mark.timeout(900)]

CHART = REPO / "charts" / "chaos-runner"
BUILD_HELM = REPO / "tests" / "cluster" / "build-helm.sh"
RELEASE = "gd"
FULLNAME = "gd-chaos-runner"  # <release>-<chart>, the ServiceAccount, Roles and CronJob prefix
CLAIM = f"{FULLNAME}-state"
STATE_DIR = "/var/lib/chaos/state"  # the runner's own folder on the state volume
#: runbooks/fault-left-behind.md, word for word: run only the recover step of a CronJob now.
RECOVER_NOW = (
    "kubectl -n {ns} create job {job} --from=cronjob/{cronjob} --dry-run=client -o json"
    " | jq '.spec.template.spec.containers = .spec.template.spec.initContainers"
    " | del(.spec.template.spec.initContainers)'"
    " | kubectl -n {ns} create -f -"
)
RUNNER_UID = 65532
#: How long a fault would last by itself in the SIGKILL test; recovery must beat it by far.
STRESS_SECONDS = 120
RECOVER_WITHIN_S = 30
JOB_TIMEOUT_S = 240


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_or_fail(message: str) -> None:
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def helm() -> str:
    """$CHAOS_HELM, or the helm tests/cluster/build-helm.sh builds (as tests/k8s/test_helm_chart.py)."""
    given = os.environ.get("CHAOS_HELM")
    if given:
        return given
    try:
        proc = subprocess.run(["bash", str(BUILD_HELM)], capture_output=True, text=True,
                              timeout=1800, cwd=REPO, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        _skip_or_fail("tests/cluster/build-helm.sh did not finish in 30 minutes")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not os.access(Path(lines[-1]) / "helm", os.X_OK):
        _skip_or_fail(f"no helm binary: build-helm.sh exited {proc.returncode}:\n"
                      + "\n".join(proc.stderr.splitlines()[-20:]))
    return str(Path(lines[-1]) / "helm")


@dataclass
class Pushgateway:
    url: str

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5, trust_env=False).text


@pytest.fixture
def pushgateway(real_node: realnode.RealNode, tmp_path: Path) -> Iterator[Pushgateway]:
    """Debian's Pushgateway (tests/prometheus/setup.sh) on the node IP, so that pods reach it."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        _skip_or_fail("prometheus-pushgateway is not installed: run tests/prometheus/setup.sh")
    assert binary is not None
    with socket.socket() as s:
        s.bind((real_node.node_ip, 0))
        port = s.getsockname()[1]
    log = tmp_path / "pushgateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--web.listen-address={real_node.node_ip}:{port}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    gw = Pushgateway(f"http://{real_node.node_ip}:{port}")
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")
            return httpx.get(f"{gw.url}/-/ready", timeout=1, trust_env=False).status_code == 200

        wait("the Pushgateway to answer", ready, 15, every=0.1)
        yield gw
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class GameDay:
    """One release of the chart in its own namespace, a target namespace with the demo app, and
    the hostPath PersistentVolume (a folder on this host) the chart's claim binds to."""

    cluster: Any
    node: realnode.RealNode
    helm: str
    tmp: Path
    # Starts with a letter: a tag such as "1e5678" is a number to YAML 1.2 (kubectl, helm).
    tag: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:5])
    installed: bool = False
    jobs: list[str] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return f"gd-{self.tag}"

    @property
    def app_ns(self) -> str:
        return f"gd-app-{self.tag}"

    @property
    def pv(self) -> str:
        return f"gd-state-{self.tag}"

    @property
    def volume(self) -> Path:
        """The host folder behind the state volume (/var/lib/chaos in the runner's pods)."""
        return self.tmp / "state-volume"

    @property
    def env(self) -> dict[str, str]:
        return {**self.cluster.env, "KUBECONFIG": self.cluster.kubeconfig,
                **{f"HELM_{k}_HOME": str(self.tmp / f"helm-{k.lower()}")
                   for k in ("CACHE", "CONFIG", "DATA")}}

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True) -> Any:
        return self.cluster.kubectl(*args, timeout=timeout, check=check)

    def setup(self, replicas: int, *, persistent: bool = True) -> None:
        for ns in (self.ns, self.app_ns):
            self.kubectl("create", "namespace", ns)
        apply(self.cluster, demo_app(self.app_ns, replicas=replicas), self.tmp)
        if not persistent:
            return
        # What fsGroup makes of a fresh volume: owned by root, group 65532, group-writable.
        self.volume.mkdir()
        os.chown(self.volume, 0, RUNNER_UID)
        os.chmod(self.volume, 0o2775)
        apply(self.cluster, {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": self.pv, "labels": {"chaos.test/game-day": self.tag}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": self.pv,
                "hostPath": {"path": str(self.volume), "type": "Directory"},
                # Bound to this release's claim only: no other test's claim can take it.
                "claimRef": {"namespace": self.ns, "name": CLAIM},
            },
        }, self.tmp)

    def install(self, experiments: list[dict[str, Any]], pushgateway: Pushgateway | None, *,
                persistent: bool = True) -> None:
        values = {
            "image": {"repository": realnode.IMAGES["runner"].rsplit(":", 1)[0],
                      "tag": realnode.IMAGES["runner"].rsplit(":", 1)[1], "pullPolicy": "Never"},
            "helperImage": realnode.IMAGES["helper"],
            "nodeSelector": realnode.REAL_NODE_SCHEDULING["nodeSelector"],
            "tolerations": realnode.REAL_NODE_SCHEDULING["tolerations"],
            # enabled is the default; false is the emptyDir opt-out
            "persistence": ({"storageClassName": self.pv} if persistent
                            else {"enabled": False}),
            "metrics": {"pushgateway": {"url": pushgateway.url if pushgateway else "",
                                        "labels": {"gameday": self.tag}}},
            "activeDeadlineSeconds": 600,
            "experiments": experiments,
        }
        vf = self.tmp / "values.yaml"
        vf.write_text(yaml.safe_dump(values))
        self.installed = True  # a failed install leaves a release to uninstall too
        proc = subprocess.run(
            [self.helm, "install", RELEASE, str(CHART), "-n", self.ns, "-f", str(vf),
             "--wait", "--timeout", "90s"],
            capture_output=True, text=True, env=self.env, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        if not persistent:
            return
        pvc = json.loads(self.kubectl("-n", self.ns, "get", "pvc", CLAIM, "-o", "json").stdout)
        assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == self.pv, pvc

    def start_job(self, experiment: str, job: str) -> None:
        self.kubectl("-n", self.ns, "create", "job", f"--from=cronjob/{FULLNAME}-{experiment}", job)
        self.jobs.append(job)

    def job(self, job: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("-n", self.ns, "get", "job", job, "-o", "json").stdout))

    def job_pod(self, job: str) -> dict[str, Any]:
        got = pods(self.cluster, self.ns, f"job-name={job}")
        assert len(got) == 1, [p["metadata"]["name"] for p in got]
        return got[0]

    def wait_job(self, job: str, timeout: float = JOB_TIMEOUT_S) -> str:
        """Complete or Failed, whichever the Job ends with."""
        def ended() -> str | None:
            for c in self.job(job)["status"].get("conditions", []):
                if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                    return str(c["type"])
            return None

        try:
            return wait(f"Job {self.ns}/{job} to end", ended, timeout, every=1)
        except AssertionError:
            self.diagnose()
            raise

    def logs(self, pod: dict[str, Any], container: str) -> str:
        r = self.kubectl("-n", self.ns, "logs", pod["metadata"]["name"], "-c", container,
                         check=False)
        return str(r.stdout if r.returncode == 0 else f"(kubectl logs failed: {r.stderr})")

    def diagnose(self) -> None:
        for ns in (self.ns, self.app_ns):
            print(self.kubectl("-n", ns, "get", "all,pvc,events", "-o", "wide",
                               check=False).stdout, file=sys.stderr)
        for p in pods(self.cluster, self.ns, "app.kubernetes.io/instance=" + RELEASE):
            for c in ("recover", "chaos"):
                print(f"--- {p['metadata']['name']} {c}:\n{self.logs(p, c)}", file=sys.stderr)

    def teardown(self) -> None:
        if self.installed:
            # The Jobs first (their pods hold the claim), then the release, claim included.
            for job in self.jobs:
                self.kubectl("-n", self.ns, "delete", "job", job, "--ignore-not-found",
                             "--cascade=foreground", "--timeout=60s", timeout=90, check=False)
            subprocess.run([self.helm, "uninstall", RELEASE, "-n", self.ns, "--wait",
                            "--timeout", "90s"], capture_output=True, text=True, env=self.env,
                           timeout=120, check=False)
        for ns in (self.ns, self.app_ns):
            self.kubectl("delete", "namespace", ns, "--ignore-not-found", "--timeout=90s",
                         timeout=120, check=False)
        self.kubectl("delete", "pv", self.pv, "--ignore-not-found", "--timeout=60s",
                     timeout=90, check=False)
        shutil.rmtree(self.volume, ignore_errors=True)


@pytest.fixture
def game_day(kube_cluster: Any, real_node: realnode.RealNode, helm: str,
             tmp_path: Path) -> Iterator[GameDay]:
    gd = GameDay(kube_cluster, real_node, helm, tmp_path)
    try:
        yield gd
    finally:
        gd.teardown()
    left = kube_cluster.kubectl("get", "pv", gd.pv, "--ignore-not-found", "-o", "name").stdout
    assert left.strip() == "", f"the PersistentVolume is left behind: {left}"


# --------------------------------------------------------------------------------------- helpers


def experiment_entry(name: str, ns: str, faults: list[str], fault: str, *,
                     probe: str, slo: str, baseline: str = "2s",
                     recovery: str = "2s") -> dict[str, Any]:
    """One chart experiment, suspended: it runs only when a Job is created from its CronJob."""
    text = f"""\
apiVersion: chaos/v1
kind: Experiment
metadata: {{name: game-day-{name}}}
spec:
  target: {{platform: kubernetes, namespace: {ns}}}
  baseline: {baseline}
  recovery: {recovery}
  probes:
{probe}
  slos:
{slo}
  faults:
{fault}
  limits: {{maxDuration: 5m, maxPods: 1}}
"""
    return {"name": name, "schedule": "0 4 1 1 *", "suspend": True, "targetNamespaces": [ns],
            "faults": faults, "experiment": yaml.safe_load(text)}


def pod_kill(ns: str) -> dict[str, Any]:
    """Kill one demo-app pod; the Deployment must be whole again during the recovery check."""
    return experiment_entry(
        "kill", ns, ["podKill"],
        """\
    - name: kill-one
      podKill: {selector: {labels: {app: web}, mode: one}}
      at: 1s""",
        probe="""\
    - name: all-back
      interval: 500ms
      kubernetes: {deployment: {name: web, available: "== desired"}}""",
        slo="""\
    - {name: recovered, probe: all-back, successRate: ">= 20%", window: 10s}""",
        recovery="20s")


def events_by_runner(gd: GameDay) -> list[dict[str, Any]]:
    items = json.loads(gd.kubectl("-n", gd.app_ns, "get", "events", "-o", "json").stdout)["items"]
    return [e for e in items if e.get("reportingComponent") == "chaos-runner"]


def metric_lines(text: str, name: str, **labels: str) -> list[str]:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return [ln for ln in text.splitlines()
            if ln.startswith(name + "{") and all(w in ln for w in want)]


def wal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def runner_pid(pod: dict[str, Any]) -> int:
    """The `chaos run` process of the runner's pod, seen from the host (its pid namespace is the
    pod's; tini is PID 1 there and its parent)."""
    cg = pod_cgroup(pod, "pids")
    found = []
    for procs in cg.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm != "tini" and b"run" in argv and any(a.endswith(b"chaos") for a in argv[:2]):
                found.append(int(pid))
    assert len(found) == 1, f"expected one `chaos run` process in {cg}, found {found}"
    return found[0]


def helper_states(cluster: Any, ns: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in pods(cluster, ns):
        for s in p["status"].get("ephemeralContainerStatuses", []):
            out[s["name"]] = s["state"]
    return out


# ----------------------------------------------------------------------------------------- tests


def test_game_day_job_kills_a_pod_emits_events_pushes_metrics_and_journals_on_the_volume(
        game_day: GameDay, pushgateway: Pushgateway) -> None:
    gd = game_day
    t0 = time.monotonic()
    gd.setup(replicas=2)
    before = {p["metadata"]["uid"]: p["metadata"]["name"]
              for p in wait_ready(gd.cluster, gd.app_ns, 2)}
    gd.install([pod_kill(gd.app_ns)], pushgateway)
    cron = json.loads(gd.kubectl("-n", gd.ns, "get", "cronjob", f"{FULLNAME}-kill", "-o",
                                 "json").stdout)
    assert cron["spec"]["suspend"] is True and cron["spec"]["concurrencyPolicy"] == "Forbid"

    gd.start_job("kill", "gd-kill-now")
    if gd.wait_job("gd-kill-now") != "Complete":
        gd.diagnose()
        pytest.fail("the game-day Job failed (its logs are above)")
    pod = gd.job_pod("gd-kill-now")
    log = gd.logs(pod, "chaos")
    t_job = time.monotonic() - t0

    # The runner ran on the real node, as the chart's ServiceAccount, with the in-cluster
    # configuration: no kubeconfig anywhere in the pod (HOME is an empty tmpfs), only the
    # ServiceAccount token the kubelet projects.
    spec = pod["spec"]
    assert spec["nodeName"] == gd.node.name
    assert spec["serviceAccountName"] == FULLNAME
    assert {c["name"]: c["image"] for c in spec["containers"]} == {
        "chaos": realnode.IMAGES["runner"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": CLAIM}
    token = [n for n in volumes if n.startswith("kube-api-access-")]
    assert len(token) == 1 and set(volumes) == {"state", "tmp", "experiments", *token}, volumes
    for c in (*spec["initContainers"], *spec["containers"]):
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert "KUBECONFIG" not in env and env["HOME"] == "/tmp", env
        assert not any("kubeconfig" in a for a in c.get("command", []) + c.get("args", []))
    statuses = {s["name"]: s for s in pod["status"]["initContainerStatuses"]
                + pod["status"]["containerStatuses"]}
    assert statuses["recover"]["state"]["terminated"]["exitCode"] == 0
    assert statuses["chaos"]["state"]["terminated"]["exitCode"] == 0, log
    assert f"nothing to recover in {STATE_DIR}" in gd.logs(pod, "recover")

    # One demo-app pod is gone, and the Deployment replaced it.
    after = {p["metadata"]["uid"]: p["metadata"]["name"]
             for p in wait_ready(gd.cluster, gd.app_ns, 2)}
    killed = set(before) - set(after)
    assert len(killed) == 1 and len(set(after) - set(before)) == 1, (before, after)

    # The journal on the state volume (the host folder behind the PersistentVolume).
    reports = sorted((gd.volume / "reports").glob("kill-*.json"))
    assert len(reports) == 1, list(gd.volume.rglob("*"))
    record = json.loads(reports[0].read_text())
    run_id = record["run_id"]
    assert record["status"] == "passed" and record["exit_code"] == 0, record
    [fault] = record["faults"]
    assert fault["name"] == "kill-one" and fault["injected_at"], fault
    assert before[next(iter(killed))] in json.dumps(fault["targets"]), (fault, before)
    wal = gd.volume / "state" / "runs" / f"{run_id}.jsonl"
    types = [r["type"] for r in wal_records(wal)]
    assert types == ["start", "intent", "done", "verified", "end"], types  # a one-shot fault
    # The runner made its own private state folder on a volume root it must not trust.
    st = os.stat(gd.volume / "state")
    assert st.st_uid == RUNNER_UID and st.st_mode & 0o777 == 0o700, oct(st.st_mode)

    # The Events, written from inside the runner's pod (reportingInstance is its hostname).
    events = events_by_runner(gd)
    reasons = {e["reason"] for e in events}
    assert {"ChaosFaultInjected", "ChaosExperimentFinished"} <= reasons, events
    assert {e["reportingInstance"] for e in events} == {
        f"chaos-runner-{pod['metadata']['name']}"}
    injected = next(e for e in events if e["reason"] == "ChaosFaultInjected")
    assert run_id in injected["message"]
    assert before[next(iter(killed))] in injected["message"]

    # The run metrics in the Pushgateway: grouping key job="chaos-runner", experiment=<name>.
    text = pushgateway.metrics()
    base = {"job": "chaos-runner", "experiment": "game-day-kill", "gameday": gd.tag}
    assert metric_lines(text, "chaos_run_status", **base, status="passed")[0].endswith(" 1"), text
    assert metric_lines(text, "chaos_run_faults_injected", **base)[0].endswith(" 1")
    assert metric_lines(text, "chaos_run_exit_code", **base)[0].endswith(" 0")
    assert f"metrics: pushed to {pushgateway.url}" in log
    print(f"game day: Job Complete {t_job:.1f}s after the test started; run {run_id}")


def test_a_run_killed_mid_fault_is_recovered_by_the_next_jobs_init_step(
        game_day: GameDay, pushgateway: Pushgateway) -> None:
    gd = game_day
    gd.setup(replicas=1)
    target = wait_ready(gd.cluster, gd.app_ns, 1)[0]
    cg = pod_cgroup(target)
    gd.install([experiment_entry(
        "burn", gd.app_ns, ["cpuStress"],
        f"""\
    - name: burn
      cpuStress: {{selector: {{labels: {{app: web}}, mode: one}}, workers: 1, load: 50%,
                  image: "${{CHAOS_HELPER_IMAGE}}"}}
      at: 1s
      duration: {STRESS_SECONDS}s""",
        probe="""\
    - name: ready
      interval: 500ms
      kubernetes: {pods: {selector: {app: web}, ready: ">= 1"}}""",
        slo="""\
    - {name: up, probe: ready, successRate: ">= 50%", window: 10s}""",
        baseline="3s")], pushgateway)

    # The first game day injects; its runner is SIGKILLed while the fault is active.
    gd.start_job("burn", "gd-burn-1")
    try:
        wait("stress-ng in the target pod's cgroup", lambda: "stress-ng" in cgroup_processes(cg),
             120)
    except AssertionError:
        gd.diagnose()
        raise
    first = gd.job_pod("gd-burn-1")
    pid = runner_pid(first)
    os.kill(pid, signal.SIGKILL)
    t_kill = time.monotonic()
    assert gd.wait_job("gd-burn-1", 60) == "Failed"
    first = gd.job_pod("gd-burn-1")
    [status] = first["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 128 + signal.SIGKILL, status
    # Nothing reverted it: the stress outlives the runner, and its journal says it is applied.
    time.sleep(2)
    assert "stress-ng" in cgroup_processes(cg), "the fault should outlive the killed runner"
    [wal] = list((gd.volume / "state" / "runs").glob("*.jsonl"))
    run_id = wal.stem
    types = [r["type"] for r in wal_records(wal)]
    assert "applied" in types and "reverted" not in types and "end" not in types, types
    helper, undo = container_names(run_id, "burn")
    assert "running" in helper_states(gd.cluster, gd.app_ns)[helper], helper_states(
        gd.cluster, gd.app_ns)

    # The next game day: its init step finds that journal on the claim and ends the fault.
    gd.start_job("burn", "gd-burn-2")
    t_next = time.monotonic()
    try:
        wait("stress-ng gone from the target pod",
             lambda: "stress-ng" not in cgroup_processes(cg), RECOVER_WITHIN_S)
    except AssertionError:
        gd.diagnose()
        raise
    gone_after_kill = time.monotonic() - t_kill
    gone_after_next = time.monotonic() - t_next
    assert gone_after_kill < STRESS_SECONDS / 2, f"stress ended {gone_after_kill:.0f}s after the kill"

    def recover_done() -> dict[str, Any] | None:
        p = gd.job_pod("gd-burn-2")
        for s in p["status"].get("initContainerStatuses", []):
            if s["name"] == "recover" and "terminated" in s["state"]:
                return p
        return None

    second = wait("the recover init container to end", recover_done, 60)
    [init] = second["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0, gd.logs(second, "recover")
    said = gd.logs(second, "recover")
    assert f"run {run_id} (game-day-burn" in said, said
    assert "burn [cpuStress] applied" in said, said
    assert "reverted:" in said and "recovered: nothing is left" in said, said
    records = wal_records(wal)
    assert records[-1]["type"] == "reverted" and records[-1]["by"] == "recover", records[-1]
    states = helper_states(gd.cluster, gd.app_ns)
    assert states[helper].get("terminated", {}).get("exitCode") == 0, states
    assert undo in states, states

    # Then this Job runs the experiment again; right after a killed run its preflight may be
    # refused by the dead run's Lease (it expires 30 s after that run's last renewal). Stop it
    # either way (SIGTERM: it reverts whatever it added).
    time.sleep(3)
    print("the next Job's run, before it is stopped:\n" + gd.logs(second, "chaos")[-1500:])
    gd.kubectl("-n", gd.ns, "delete", "job", "gd-burn-2", "--cascade=foreground",
               "--timeout=120s", timeout=150)
    wait("no stress-ng in the target pod", lambda: "stress-ng" not in cgroup_processes(cg), 30)
    running = [n for n, s in helper_states(gd.cluster, gd.app_ns).items() if "running" in s]
    assert running == [], running

    # runbooks/fault-left-behind.md: `chaos recover` alone, now, from the CronJob's own pod
    # template (its ServiceAccount, state claim and helper image), without running the
    # experiment again. Everything is recovered by now, so it finds nothing left.
    cmd = RECOVER_NOW.format(ns=gd.ns, cronjob=f"{FULLNAME}-burn", job="gd-recover-now")
    if shutil.which("jq") is None:
        _skip_or_fail("jq is not installed (the runbook's recover-now command uses it)")
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       env=gd.env, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    gd.jobs.append("gd-recover-now")
    assert gd.wait_job("gd-recover-now", 120) == "Complete"
    alone = gd.job_pod("gd-recover-now")
    assert [c["name"] for c in alone["spec"]["containers"]] == ["recover"]
    assert not alone["spec"].get("initContainers")
    assert f"nothing to recover in {STATE_DIR}" in gd.logs(alone, "recover")
    print(f"recovered: stress-ng gone {gone_after_kill:.1f}s after the SIGKILL, "
          f"{gone_after_next:.1f}s after the next Job was created (the fault would have lasted "
          f"{STRESS_SECONDS}s)")


def test_the_emptydir_opt_out_runs_but_keeps_no_state(game_day: GameDay) -> None:
    """persistence.enabled=false: the state dir is an emptyDir (a 0777 folder under fsGroup,
    which the runner must not trust as its state dir; it makes its own folder in it). The run
    works; nothing outlives the pod, which is what values.yaml and the README warn about."""
    gd = game_day
    gd.setup(replicas=2, persistent=False)
    wait_ready(gd.cluster, gd.app_ns, 2)
    gd.install([pod_kill(gd.app_ns)], None, persistent=False)
    assert gd.kubectl("-n", gd.ns, "get", "pvc", "-o", "name").stdout.strip() == ""
    gd.start_job("kill", "gd-kill-ephemeral")
    # The emptyDir on the host, while the run lasts (the kubelet removes it once the pod ends):
    # writable by group and others, so never the runner's state dir itself; the runner made
    # its own private folder in it.
    uid = wait("the Job's pod", lambda: gd.job_pod("gd-kill-ephemeral")["metadata"]["uid"], 60)
    found = wait("the runner's state folder in the pod's emptyDir", lambda: list(
        gd.node.dir.glob(f"**/pods/{uid}/volumes/kubernetes.io~empty-dir/state/state")), 60)
    root = found[0].parent
    st = os.stat(root)
    assert st.st_mode & 0o022 == 0o022 and st.st_gid == RUNNER_UID, oct(st.st_mode)
    st = os.stat(root / "state")
    assert st.st_uid == RUNNER_UID and st.st_mode & 0o777 == 0o700, oct(st.st_mode)
    if gd.wait_job("gd-kill-ephemeral") != "Complete":
        gd.diagnose()
        pytest.fail("the game-day Job failed (its logs are above)")
    pod = gd.job_pod("gd-kill-ephemeral")
    state = next(v for v in pod["spec"]["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {}}
    assert f"nothing to recover in {STATE_DIR}" in gd.logs(pod, "recover")
    assert "metrics: pushed" not in gd.logs(pod, "chaos")
    wait("the emptyDir gone with the pod's end, the journals with it",
         lambda: not root.exists(), 60)
    wait_ready(gd.cluster, gd.app_ns, 2)
