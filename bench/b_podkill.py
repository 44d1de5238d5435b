"""Pod kill at scale: 1,000 pods in 10 namespaces, kill 50% by label; wall time and API requests.

A real control plane (tests/cluster binaries, kwokctl --runtime binary, fake kwok nodes) runs 10
Deployments of 100 replicas labelled app=bench-target, one per namespace. Each tool kills 50% of
the pods in every namespace by label selector:

- ours: the runner's KubePlatform (plan_fault lists and picks the pods, PodKillFault.inject
  deletes them) for an experiment with 10 podKill faults, in one process (bench/podkill_ours.py);
- peer: chaosk8s.pod.actions.terminate_pods(label_selector, ns, qty=50, mode="percentage",
  rand=True) once per namespace, in one process (bench/podkill_ctk.py);
- and the same kill through each tool's whole CLI (`chaos run`), as extra figures.

API requests are counted from the kube-apiserver audit log (level Metadata, stage
ResponseComplete): each tool authenticates as its own ServiceAccount, so its requests are told
apart by user, never mixed with the controllers' or the benchmark's own (admin) requests.
Between kills the benchmark waits until all 10 Deployments are back to 100 available pods and
no terminating pod is left. The cluster is always deleted at the end.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import yaml
from common import ROOT, Ctx, Figure, k8s_conftest

BENCH = "podkill"
NAMESPACES = [f"bench-{i}" for i in range(10)]
REPLICAS = 100
LABEL = ("app", "bench-target")
PERCENT = 50
#: kwok nodes take 110 pods each; 16 leave room for replacements scheduled while the killed
#: pods are still terminating (1,000 + 500 at the peak).
FAKE_NODES = 16
SA_NAMESPACE = "chaos-bench"
TOOLS = {"ours": "ours", "peer": "ctk"}  # tool -> its ServiceAccount name
RESTORE_TIMEOUT_S = 600.0


# ---------------------------------------------------------------------------------------------
# The cluster: tests/k8s/conftest.py's helpers, plus an audit policy and more fake nodes
# ---------------------------------------------------------------------------------------------


def _bin_dir() -> Path:
    """$CHAOS_TESTBIN if set (as scripts/test exports it), else tests/cluster/build.sh's answer
    (a ~20 ms no-op once built; stdout's last line is the bin dir)."""
    if os.environ.get("CHAOS_TESTBIN"):
        return Path(os.environ["CHAOS_TESTBIN"]).expanduser().resolve()
    out = subprocess.run(["bash", str(ROOT / "tests" / "cluster" / "build.sh")],
                         capture_output=True, text=True, check=True, timeout=5400).stdout
    return Path(out.strip().splitlines()[-1])


def _audit_policy(path: Path) -> None:
    users = [f"system:serviceaccount:{SA_NAMESPACE}:{sa}" for sa in TOOLS.values()]
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        # One event per request: the one written when the response is complete.
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [{"level": "Metadata", "users": users}, {"level": "None"}],
    }
    path.write_text(yaml.safe_dump(policy))


def _start_cluster(kc: ModuleType, bin_dir: Path, base: Path) -> Any:
    """conftest.start_cluster with an audit policy, more nodes and faster controllers."""
    name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workdir = base / "kwok"
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig_out = base / "kubeconfig-merged.yaml"
    env = kc._cluster_env(bin_dir, workdir, kubeconfig_out)
    cluster = kc.KubeCluster(name=name, bin_dir=str(bin_dir), workdir=str(workdir),
                             kubeconfig=str(workdir / "clusters" / name / "kubeconfig.yaml"),
                             env=env)
    policy = base / "audit-policy.yaml"
    _audit_policy(policy)
    create = [*kc._create_args(name, bin_dir, kubeconfig_out),
              "--kube-audit-policy", str(policy),
              # The controllers' default client QPS (20/50) would take half a minute to
              # replace 500 pods between trials; the apiserver keeps its defaults. The two
              # components alternate: kwokctl 0.8.0 indexes its patches by argument position
              # and panics when one component's arguments come in a row after another's.
              "--extra-args", "kube-controller-manager=kube-api-qps=500",
              "--extra-args", "kube-scheduler=kube-api-qps=500",
              "--extra-args", "kube-controller-manager=kube-api-burst=1000",
              "--extra-args", "kube-scheduler=kube-api-burst=1000"]
    kc._check_no_downloads(kc._run([*create, "--dry-run"], env, timeout=60).stdout)
    kc._reap_orphans()
    kc._register(cluster)
    atexit.register(cluster.delete)
    t0 = time.monotonic()
    try:
        with kc._creation_lock():
            kc._run(create, env, timeout=kc.CREATE_TIMEOUT_S + 60)
        cluster.kwokctl("scale", "node", "--replicas", str(FAKE_NODES), timeout=120)
        cluster.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s",
                        timeout=150)
        kc.wait_for("ServiceAccount default/default",
                    lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", "default",
                                            check=False).returncode == 0, timeout=60)
    except BaseException:
        kc._dump_logs(cluster)
        cluster.delete()
        raise
    cluster.create_seconds = time.monotonic() - t0
    return cluster


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM (timeout, a cancelled job) must still run the finally that deletes the cluster."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------------
# Workload, identities, experiments
# ---------------------------------------------------------------------------------------------


def _manifests(cluster: Any) -> str:
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": SA_NAMESPACE}}]
    for tool_sa in TOOLS.values():
        docs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": tool_sa, "namespace": SA_NAMESPACE}})
        # cluster-admin for both: the benchmark compares speed, not least privilege.
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": f"chaos-bench-{tool_sa}"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "cluster-admin"},
                     "subjects": [{"kind": "ServiceAccount", "name": tool_sa,
                                   "namespace": SA_NAMESPACE}]})
    labels = {LABEL[0]: LABEL[1]}
    for ns in NAMESPACES:
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bench-target", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "nodeSelector": cluster.node_selector,
                    "tolerations": cluster.tolerations,
                    "containers": [{"name": "app", "image": "bench/fake:1"}],
                }},
            },
        })
    return yaml.safe_dump_all(docs)


def _our_experiment(path: Path) -> None:
    faults = [{"name": f"kill-{ns}",
               "podKill": {"selector": {"namespace": ns, "labels": {LABEL[0]: LABEL[1]},
                                        "mode": {"percent": f"{PERCENT}%"}}}}
              for ns in NAMESPACES]
    experiment = {
        "apiVersion": "chaos/v1", "kind": "Experiment",
        "metadata": {"name": "bench-podkill"},
        "spec": {
            "target": {"platform": "kubernetes", "namespace": NAMESPACES[0]},
            "baseline": "0s", "recovery": "0s",
            # A probe is mandatory; a local command keeps it off the API server.
            "probes": [{"name": "alive", "interval": "10s", "command": {"argv": ["true"]}}],
            "faults": faults,
            # limits.maxPods defaults to 10 per fault: a benchmark of 50 per namespace says so.
            "limits": {"maxPods": 1000},
        },
    }
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))


def _ctk_experiment(path: Path) -> None:
    method = [{"type": "action", "name": f"kill-{ns}",
               "provider": {"type": "python", "module": "chaosk8s.pod.actions",
                            "func": "terminate_pods",
                            "arguments": {"label_selector": f"{LABEL[0]}={LABEL[1]}", "ns": ns,
                                          "qty": PERCENT, "mode": "percentage", "rand": True}}}
              for ns in NAMESPACES]
    experiment = {"version": "1.0.0", "title": "bench-podkill",
                  "description": "kill 50% of the pods in 10 namespaces", "method": method}
    path.write_text(json.dumps(experiment, indent=1))


# ---------------------------------------------------------------------------------------------
# Waiting and counting
# ---------------------------------------------------------------------------------------------


def _restored(core: Any, apps: Any) -> bool:
    deployments = apps.list_deployment_for_all_namespaces(
        label_selector=f"{LABEL[0]}={LABEL[1]}").items
    if len(deployments) != len(NAMESPACES):
        return False
    for d in deployments:
        st = d.status
        if (st.available_replicas or 0) != REPLICAS or (st.updated_replicas or 0) != REPLICAS \
                or (st.replicas or 0) != REPLICAS:
            return False
    # Terminating pods must be gone too: the peer would otherwise pick them again.
    pods = core.list_pod_for_all_namespaces(label_selector=f"{LABEL[0]}={LABEL[1]}",
                                            resource_version="0").items
    running = [p for p in pods if p.status.phase == "Running"
               and p.metadata.deletion_timestamp is None]
    return len(pods) == len(running) == REPLICAS * len(NAMESPACES)


class Audit:
    """Reads the audit log incrementally; requests are attributed by ServiceAccount."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip(self) -> None:
        self._settle()
        self.offset = self.path.stat().st_size

    def _settle(self, quiet: float = 0.5, limit: float = 10.0) -> None:
        # The log backend writes as requests complete; wait until the file stops growing.
        deadline = time.monotonic() + limit
        size = -1
        while time.monotonic() < deadline:
            now = self.path.stat().st_size
            if now == size:
                return
            size = now
            time.sleep(quiet)

    def take(self, sa: str) -> list[dict[str, Any]]:
        """The completed requests of ``sa`` since the last call."""
        self._settle()
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        user = f"system:serviceaccount:{SA_NAMESPACE}:{sa}"
        events = []
        for line in data[:end].splitlines():
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete" and \
                    event.get("user", {}).get("username") == user:
                events.append(event)
        return events


def request_key(event: dict[str, Any]) -> str:
    ref = event.get("objectRef")
    if not ref:
        return f"{event['verb']} {urlsplit(event['requestURI']).path}"
    group = ref.get("apiGroup")
    resource = (f"{group}/" if group else "") + ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return f"{event['verb']} {resource}"


def breakdown(events: list[dict[str, Any]]) -> dict[str, int]:
    counts = collections.Counter(request_key(e) for e in events)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


class Cpu:
    """CPU seconds of the control plane's processes (the apiserver, etcd, controllers, scheduler
    and kwok of this cluster) and of the tool's process, to show what a kill's time goes to."""

    def __init__(self, cluster: Any) -> None:
        marker = str(cluster.workdir)
        self.pids: dict[int, str] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(marker.encode() in a for a in argv):
                self.pids[int(proc.name)] = Path(argv[0].decode()).name
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = collections.defaultdict(float)
        for pid, name in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] += (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return out


def _run(argv: list[str], env: dict[str, str], timeout: float = 900) -> tuple[str, float, float]:
    """Run argv; return (stdout, wall seconds, CPU seconds of it and what it waited for)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{' '.join(argv)} timed out after {timeout:.0f}s")
            time.sleep(0.01)
        took = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                           f"{stdout[-2000:]}\n{stderr[-3000:]}")
    return stdout, took, usage.ru_utime + usage.ru_stime


def _run_json(argv: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    stdout, _, cpu = _run(argv, env)
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result, cpu


def run(ctx: Ctx) -> list[Figure]:
    try:
        kc = k8s_conftest()
        from kubernetes import client as k8s
    except ImportError as exc:
        raise RuntimeError(f"{exc}: the project venv needs the dev extras "
                           "(pip install -e '.[dev]': kubernetes, pytest)") from exc
    base = Path(tempfile.mkdtemp(prefix="podkill-", dir=ctx.workdir))
    with _sigterm_as_interrupt():
        cluster = _start_cluster(kc, _bin_dir(), base)
        try:
            print(f"   cluster {cluster.name} up in {cluster.create_seconds:.1f}s",
                  file=sys.stderr, flush=True)
            return _measure(ctx, kc, k8s, cluster, base)
        finally:
            cluster.delete()


def _measure(ctx: Ctx, kc: ModuleType, k8s: Any, cluster: Any, base: Path) -> list[Figure]:
    manifest = base / "workload.yaml"
    manifest.write_text(_manifests(cluster))
    cluster.kubectl("apply", "-f", str(manifest), timeout=120)
    kubeconfigs = {tool: base / f"kubeconfig-{sa}.yaml" for tool, sa in TOOLS.items()}
    for tool, sa in TOOLS.items():
        kc.wait_for(f"ServiceAccount {SA_NAMESPACE}/{sa}",
                    lambda sa=sa: cluster.kubectl("get", "serviceaccount", sa, "-n",
                                                  SA_NAMESPACE, check=False).returncode == 0,
                    timeout=60)
        # Bearer token only: the audit log attributes every request of the tool to its user.
        cluster.token_kubeconfig(SA_NAMESPACE, sa, kubeconfigs[tool], seconds=86400)
    ours_yaml, ctk_json = base / "podkill.yaml", base / "podkill-ctk.json"
    _our_experiment(ours_yaml)
    _ctk_experiment(ctk_json)
    ctk_settings = base / "ctk-settings.yaml"
    ctk_settings.write_text("{}\n")

    api = cluster.api_client()
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)

    def wait_restored(why: str) -> float:
        t0 = time.monotonic()
        kc.wait_for(f"all {len(NAMESPACES)} Deployments back to {REPLICAS} available ({why})",
                    lambda: _restored(core, apps), timeout=RESTORE_TIMEOUT_S, interval=1.0)
        return time.monotonic() - t0

    took = wait_restored("initial rollout")
    print(f"   {REPLICAS * len(NAMESPACES)} pods Running in {took:.0f}s", file=sys.stderr,
          flush=True)
    audit = Audit(Path(cluster.workdir) / "clusters" / cluster.name / "logs" / "audit.log")

    env = {k: v for k, v in cluster.env.items() if k != "KUBECONFIG"}
    selector = f"{LABEL[0]}={LABEL[1]}"
    state_dir = base / "state"

    def ours_inproc() -> tuple[float, float]:
        r, cpu = _run_json([ctx.python, str(ROOT / "bench" / "podkill_ours.py"), str(ours_yaml),
                            str(kubeconfigs["ours"])], env)
        return float(r["seconds"]), cpu

    def peer_inproc() -> tuple[float, float]:
        r, cpu = _run_json([ctx.ctk_python, str(ROOT / "bench" / "podkill_ctk.py"), selector,
                            str(PERCENT), *NAMESPACES],
                           {**env, "KUBECONFIG": str(kubeconfigs["peer"])})
        return float(r["seconds"]), cpu

    def ours_cli() -> tuple[float, float]:
        _, took, cpu = _run([ctx.chaos, "run", str(ours_yaml), "--kubeconfig",
                             str(kubeconfigs["ours"]), "--state-dir", str(state_dir),
                             "--journal", str(base / "journal-ours.json"),
                             "--log-format", "json"], env)
        return took, cpu

    def peer_cli() -> tuple[float, float]:
        _, took, cpu = _run([ctx.ctk, "--no-version-check", "--no-log-file", "--settings",
                             str(ctk_settings), "run", str(ctk_json), "--journal-path",
                             str(base / "journal-ctk.json")],
                            {**env, "KUBECONFIG": str(kubeconfigs["peer"])})
        return took, cpu

    cpu_meter = Cpu(cluster)
    profile: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    actions: dict[tuple[str, str], Callable[[], tuple[float, float]]] = {
        ("inproc", "ours"): ours_inproc, ("inproc", "peer"): peer_inproc,
        ("cli", "ours"): ours_cli, ("cli", "peer"): peer_cli,
    }
    seconds: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    requests: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    breakdowns: dict[str, dict[str, dict[str, int]]] = collections.defaultdict(dict)
    restores: list[float] = []
    user_agents: dict[str, list[str]] = {}
    trials = ctx.trials(5, 1)
    for trial in range(trials):
        # Interleaved, and who goes first alternates, so drift hurts neither side.
        order = ["ours", "peer"] if trial % 2 == 0 else ["peer", "ours"]
        for mode in ("inproc", "cli"):
            for tool in order:
                audit.skip()
                before = cpu_meter.sample()
                took, tool_cpu = actions[(mode, tool)]()
                after = cpu_meter.sample()
                # Where the time went: the tool's own CPU vs the control plane's, same window.
                spent = {name: round(after[name] - before.get(name, 0.0), 2) for name in after}
                spent["tool"] = round(tool_cpu, 2)
                profile[f"{mode} {tool}"].append(spent)
                events = audit.take(TOOLS[tool])
                deleted = sum(1 for e in events if request_key(e) == "delete pods"
                              and e.get("responseStatus", {}).get("code", 0) < 300)
                expected = REPLICAS * PERCENT // 100 * len(NAMESPACES)
                if deleted != expected:
                    raise RuntimeError(f"{tool} ({mode}) deleted {deleted} pods, not {expected}")
                seconds[(mode, tool)].append(took)
                requests[(mode, tool)].append(float(len(events)))
                breakdowns[mode][tool] = breakdown(events)
                agents = sorted({e.get("userAgent", "") for e in events})
                user_agents[tool] = agents
                print(f"   trial {trial + 1}/{trials} {mode:6} {tool}: {took:6.2f}s, "
                      f"{len(events)} requests {breakdowns[mode][tool]} (user agents {agents})"
                      f"; CPU seconds {spent}", file=sys.stderr, flush=True)
                restores.append(wait_restored(f"after {tool} {mode}"))
                print(f"   restored in {restores[-1]:.1f}s", file=sys.stderr, flush=True)

    peer_name = "chaostoolkit-kubernetes 0.39.0"
    extra = {"pods": REPLICAS * len(NAMESPACES), "namespaces": len(NAMESPACES),
             "killed_per_run": REPLICAS * PERCENT // 100 * len(NAMESPACES),
             "fake_nodes": FAKE_NODES, "restore_seconds": restores,
             "user_agents": user_agents, "cpu_seconds": profile}

    def five_x(ours: float, peer: float) -> bool:
        return ours <= 0.2 * peer

    inproc_notes = ("select + inject of 10 podKill faults (KubePlatform, one process) vs 10 "
                    "terminate_pods calls; connection setup included, imports excluded")
    cli_notes = ("whole `chaos run` process (preflight access review, leases, events) vs "
                 "Chaos Toolkit `chaos run` of 10 terminate_pods actions")
    return [
        Figure(BENCH, "kill wall time", "s", seconds[("inproc", "ours")],
               seconds[("inproc", "peer")], peer_name, "<= 0.2x peer", five_x,
               notes=inproc_notes, extra=extra),
        # One DELETE per pod is the floor for any tool; the target is not to add to it.
        Figure(BENCH, "API requests", "requests", requests[("inproc", "ours")],
               requests[("inproc", "peer")], peer_name, "<= 1.1x peer",
               lambda o, p: o <= 1.1 * p,
               notes=inproc_notes, extra={"breakdown": breakdowns["inproc"]}),
        Figure(BENCH, "control-plane CPU during the kill", "s",
               [sum(v for k, v in p.items() if k != "tool") for p in profile["inproc ours"]],
               [sum(v for k, v in p.items() if k != "tool") for p in profile["inproc peer"]],
               peer_name, "report",
               notes="apiserver + etcd + controllers + scheduler + kwok, during the kill"),
        Figure(BENCH, "tool CPU during the kill", "s",
               [p["tool"] for p in profile["inproc ours"]],
               [p["tool"] for p in profile["inproc peer"]], peer_name, "report",
               notes="the tool's own process (user + system)"),
        Figure(BENCH, "CLI run wall time", "s", seconds[("cli", "ours")],
               seconds[("cli", "peer")], peer_name, "report", notes=cli_notes),
        Figure(BENCH, "CLI API requests", "requests", requests[("cli", "ours")],
               requests[("cli", "peer")], peer_name, "report", notes=cli_notes,
               extra={"breakdown": breakdowns["cli"]}),
    ]
