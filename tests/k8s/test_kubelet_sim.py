"""Tests of the ephemeral-container test infrastructure, against the real test control plane:

- kwok serves the pod log API for its fake nodes (``--enable-crds Logs,ClusterLogs``), from a
  file this test controls and that grows while the test writes to it;
- the apiserver accepts a dry-run PATCH of ``pods/ephemeralcontainers`` and persists nothing;
- ``kubelet_sim.KubeletSim`` runs ephemeral containers for real (statuses, logs, exit codes,
  shared PID namespaces per target, network namespaces, runAsUser) or writes given states, and
  leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubelet_sim import (
    Exec,
    KubeletSim,
    Log,
    Running,
    Sleep,
    Status,
    Terminated,
    Waiting,
)
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.k8s

WAIT_S = 60
SMP = "application/strategic-merge-patch+json"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "unshare", "nsenter", "setpriv")),
    reason="Exec mode needs root and ip/unshare/nsenter/setpriv",
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def core(kube_cluster: Any) -> Iterator[client.CoreV1Api]:
    with kube_cluster.api_client() as api:
        yield client.CoreV1Api(api)


def make_pod(cluster: Any, core: client.CoreV1Api, ns: str, name: str,
             containers: tuple[str, ...] = ("app",)) -> dict[str, Any]:
    """A bare pod on a kwok node, waited until Running and Ready; returns it as a dict."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": cluster.node_selector,
            "tolerations": cluster.tolerations,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": c, "image": "registry.invalid/fake:1"} for c in containers],
        },
    }
    core.create_namespaced_pod(ns, body)

    def ready() -> dict[str, Any] | None:
        pod = get_pod(core, ns, name)
        conds = pod.get("status", {}).get("conditions") or []
        ok = pod["status"].get("phase") == "Running" and any(
            c["type"] == "Ready" and c["status"] == "True" for c in conds)
        return pod if ok else None

    return cluster.wait_for(f"pod {ns}/{name} Ready", ready, timeout=WAIT_S)


def get_pod(core: client.CoreV1Api, ns: str, name: str) -> dict[str, Any]:
    resp = core.read_namespaced_pod(name, ns, _preload_content=False, _request_timeout=15)
    return json.loads(resp.data)  # type: ignore[no-any-return]


def add_ephemeral(core: client.CoreV1Api, ns: str, pod: str, *containers: dict[str, Any],
                  dry_run: bool = False) -> dict[str, Any]:
    """Strategic-merge PATCH of pods/ephemeralcontainers (what ``kubectl debug`` does)."""
    kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
    resp = core.patch_namespaced_pod_ephemeralcontainers(
        pod, ns, {"spec": {"ephemeralContainers": list(containers)}},
        _content_type=SMP, _preload_content=False, _request_timeout=15, **kwargs)
    return json.loads(resp.data)  # type: ignore[no-any-return]


def ec(name: str, script: str, *, target: str | None = "app", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": "registry.invalid/helper:1",
                         "command": ["sh", "-c", script, name], **extra}
    if target:
        c["targetContainerName"] = target
    return c


def ec_statuses(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in pod.get("status", {}).get("ephemeralContainerStatuses") or []}


def logs(cluster: Any, ns: str, pod: str, container: str) -> str:
    return str(cluster.kubectl("logs", "-n", ns, pod, "-c", container, timeout=30).stdout)


def raw_log(cluster: Any, ns: str, pod: str, container: str, limit: int | None = None) -> str:
    path = f"/api/v1/namespaces/{ns}/pods/{pod}/log?container={container}"
    if limit is not None:
        path += f"&limitBytes={limit}"
    return str(cluster.kubectl("get", "--raw", path, timeout=30).stdout)


class StateWatch:
    """Every ephemeral container state the apiserver records for one pod, in order, from a
    watch started at ``resource_version`` (each status write is its own event)."""

    def __init__(self, core: client.CoreV1Api, ns: str, pod: str, resource_version: str,
                 done: Callable[[dict[str, list[dict[str, Any]]]], bool], timeout: int = WAIT_S):
        self.seen: dict[str, list[dict[str, Any]]] = {}
        self.error: BaseException | None = None
        self._args = (core, ns, pod, resource_version, done, timeout)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        core, ns, pod, rv, done, timeout = self._args
        w = watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_pod, ns, field_selector=f"metadata.name={pod}",
                                  resource_version=rv, timeout_seconds=timeout,
                                  _request_timeout=timeout + 10):
                obj = event["object"]
                for s in obj.status.ephemeral_container_statuses or []:
                    state = {k: v for k, v in s.state.to_dict().items() if v is not None}
                    history = self.seen.setdefault(s.name, [])
                    if not history or history[-1] != state:
                        history.append(state)
                if done(self.seen):
                    w.stop()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = WAIT_S + 15) -> dict[str, list[dict[str, Any]]]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"watch did not finish: {self.seen}"
        assert self.error is None, self.error
        return self.seen

    @staticmethod
    def kinds(history: list[dict[str, Any]]) -> list[str]:
        return [next(iter(s)) for s in history]


def all_terminated(*names: str) -> Callable[[dict[str, list[dict[str, Any]]]], bool]:
    return lambda seen: all(
        seen.get(n) and "terminated" in seen[n][-1] for n in names)


# --------------------------------------------------------------------------------------------
# 1. pod logs served by kwok
# --------------------------------------------------------------------------------------------


def test_pod_log_api_serves_a_growing_file(kube_cluster: Any, k8s_namespace: str,
                                           core: client.CoreV1Api, tmp_path: Path) -> None:
    ns = k8s_namespace
    make_pod(kube_cluster, core, ns, "web")
    log = tmp_path / "app.log"
    with KubeletSim(kube_cluster.kubeconfig, ns, workdir=tmp_path) as sim:
        # a regular (not ephemeral) container's log, from a file this test writes
        assert sim.serve_log("web", "app", log) == log
        assert logs(kube_cluster, ns, "web", "app") == ""
        sim.write_log("web", "app", "first line", "second line")
        assert logs(kube_cluster, ns, "web", "app") == "first line\nsecond line\n"
        sim.write_log("web", "app", "to stderr", stream="stderr")
        assert logs(kube_cluster, ns, "web", "app").endswith("second line\nto stderr\n")
        assert raw_log(kube_cluster, ns, "web", "app", limit=8) == "first li"
        assert core.read_namespaced_pod_log("web", ns, container="app", tail_lines=1,
                                            _request_timeout=15) == "to stderr\n"

        # `kubectl logs -f` streams lines written after it started
        proc = subprocess.Popen(
            [str(Path(kube_cluster.bin_dir) / "kubectl"), "--kubeconfig", kube_cluster.kubeconfig,
             "logs", "-f", "-n", ns, "web", "-c", "app", "--tail=0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kube_cluster.env)
        try:
            got: list[str] = []
            reader = threading.Thread(
                target=lambda: got.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
            reader.start()
            deadline = time.monotonic() + 30
            while "appended later\n" not in got and time.monotonic() < deadline:
                sim.write_log("web", "app", "appended later")
                time.sleep(0.5)
            assert "appended later\n" in got, (got, proc.poll())
        finally:
            proc.kill()
            proc.wait(timeout=10)

        # a container with no log registered for it: the API reports an error, as a kubelet
        # does for a container that never started
        make_pod(kube_cluster, core, ns, "other")
        with pytest.raises(ApiException):
            core.read_namespaced_pod_log("other", ns, container="app", _request_timeout=15)
    assert log.exists()  # a file the test passed in stays the test's


def test_dry_run_ephemeral_container_patch_persists_nothing(
        kube_cluster: Any, k8s_namespace: str, core: client.CoreV1Api) -> None:
    ns = k8s_namespace
    before = make_pod(kube_cluster, core, ns, "web")
    answer = add_ephemeral(core, ns, "web", ec("dry", "echo hi"), dry_run=True)
    # accepted: the answer is the pod as it would be, with the container defaulted
    names = [c["name"] for c in answer["spec"].get("ephemeralContainers") or []]
    assert names == ["dry"]
    dry = answer["spec"]["ephemeralContainers"][0]
    assert dry["terminationMessagePolicy"] == "File"
    assert dry["imagePullPolicy"] == "IfNotPresent"
    # ... but nothing was stored (the answer shows the generation it would have had)
    after = get_pod(core, ns, "web")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"].get("generation") == before["metadata"].get("generation")
    assert not after["spec"].get("ephemeralContainers")
    assert answer["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    # validation runs in a dry run too
    for bad, why in ((ec("app", "true"), 'Duplicate value: "app"'),
                     (ec("x", "true", target="nope"), 'targetContainerName: Not found: "nope"')):
        with pytest.raises(ApiException) as err:
            add_ephemeral(core, ns, "web", bad, dry_run=True)
        assert err.value.status == 422, err.value.body
        assert why in json.loads(err.value.body)["message"], err.value.body
    # the same patch for real is stored
    add_ephemeral(core, ns, "web", ec("dry", "echo hi"))
    assert [c["name"] for c in get_pod(core, ns, "web")["spec"]["ephemeralContainers"]] == ["dry"]


# --------------------------------------------------------------------------------------------
# 2. the simulator, Exec mode
# --------------------------------------------------------------------------------------------


@needs_root
def test_exec_statuses_logs_and_exit_codes(kube_cluster: Any, k8s_namespace: str,
                                           core: client.CoreV1Api, kubelet_sim: KubeletSim) -> None:
    ns = k8s_namespace
    pod = make_pod(kube_cluster, core, ns, "web")
    names = ("ok", "fail", "fail-file")
    seen = StateWatch(core, ns, "web", pod["metadata"]["resourceVersion"], all_terminated(*names))
    add_ephemeral(
        core, ns, "web",
        ec("ok", 'echo "hello from $0"; sleep 0.3; echo "done as $(id -u)"'),
        ec("fail", "echo about to fail; sleep 0.2; echo bad thing >&2; exit 3",
           terminationMessagePolicy="FallbackToLogsOnError"),
        ec("fail-file", "echo about to fail; exit 4"),  # policy File: no message from the log
    )
    history = seen.join()
    for name in names:
        assert StateWatch.kinds(history[name]) == ["waiting", "running", "terminated"], history
        assert history[name][0]["waiting"]["reason"] == "ContainerCreating"
        assert history[name][1]["running"]["started_at"] is not None

    statuses = ec_statuses(get_pod(core, ns, "web"))
    ok = statuses["ok"]["state"]["terminated"]
    assert (ok["exitCode"], ok["reason"]) == (0, "Completed")
    assert "message" not in ok
    assert ok["startedAt"] <= ok["finishedAt"]
    assert statuses["ok"]["containerID"].startswith("kubelet-sim://")
    fail = statuses["fail"]["state"]["terminated"]
    assert (fail["exitCode"], fail["reason"]) == (3, "Error")
    assert fail["message"] == "about to fail\nbad thing\n"
    ff = statuses["fail-file"]["state"]["terminated"]
    assert (ff["exitCode"], ff["reason"], ff.get("message")) == (4, "Error", None)
    for s in statuses.values():
        assert (s["ready"], s["restartCount"]) == (False, 0)

    rec = kubelet_sim.record("ok")
    assert rec is not None and rec.mode == "exec" and rec.started and rec.exit_code == 0
    assert rec.log_path is not None and rec.log_path.exists()
    assert kubelet_sim.record("fail").exit_code == 3  # type: ignore[union-attr]

    # the log API, through kube-apiserver and kwok
    assert logs(kube_cluster, ns, "web", "ok") == "hello from ok\ndone as 0\n"
    assert logs(kube_cluster, ns, "web", "fail") == "about to fail\nbad thing\n"
    assert raw_log(kube_cluster, ns, "web", "ok", limit=10) == "hello from"
    assert raw_log(kube_cluster, ns, "web", "fail") == "about to fail\nbad thing\n"

    # kwok does not overwrite what we wrote, and the pod is otherwise untouched
    time.sleep(2)
    again = get_pod(core, ns, "web")
    assert ec_statuses(again) == statuses
    assert again["status"]["phase"] == "Running"
    assert [c["name"] for c in again["status"]["containerStatuses"]] == ["app"]


@needs_root
def test_containers_targeting_one_container_share_a_pid_namespace(
        kube_cluster: Any, k8s_namespace: str, core: client.CoreV1Api,
        kubelet_sim: KubeletSim) -> None:
    ns = k8s_namespace
    make_pod(kube_cluster, core, ns, "web", containers=("app", "side"))
    make_pod(kube_cluster, core, ns, "other")
    marker = f"sleep 4{uuid.uuid4().int % 10**6:06d}"  # unique, so no host process matches
    pattern = f"[{marker[0]}]{marker[1:]}"  # a regex for marker that does not match itself
    add_ephemeral(core, ns, "web", ec("holder", f"echo up; exec {marker}"))
    kubelet_sim.wait_for("holder", state="running", timeout=WAIT_S)
    seek = (f"pgrep -f '{pattern}' || exit 1; echo procs=$(ls /proc | grep -c '^[0-9]'); "
            "echo links=$(ip -o link show | wc -l)")
    add_ephemeral(core, ns, "web", ec("seeker", seek), ec("side-seeker", seek, target="side"))
    add_ephemeral(core, ns, "other", ec("seeker", seek))

    seeker = kubelet_sim.wait_for("seeker", pod="web", timeout=WAIT_S)
    out = logs(kube_cluster, ns, "web", "seeker").split()
    assert seeker.exit_code == 0, out
    # holder's sleep, as seen from inside; the only other processes there are the namespace's
    # init, holder, seeker's shell and the `ls` of the count
    assert out[0].isdigit() and int(out[0]) > 1, out
    assert int(out[1].removeprefix("procs=")) <= 8, out
    assert out[2] == "links=1", out  # only `lo`: the pod's own network namespace
    rec = kubelet_sim.record("holder")
    assert rec is not None and rec.pid is not None
    assert os.readlink(f"/proc/{rec.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{rec.pid}/ns/net") != os.readlink("/proc/self/ns/net")

    # a container targeting another container, or in another pod, sees none of it
    assert kubelet_sim.wait_for("side-seeker", timeout=WAIT_S).exit_code == 1
    assert kubelet_sim.wait_for("seeker", pod="other", timeout=WAIT_S).exit_code == 1

    # and one in the same namespace can kill it: holder ends by SIGTERM (128 + 15)
    add_ephemeral(core, ns, "web", ec("killer", f"pkill -f '{pattern}'"))
    assert kubelet_sim.wait_for("killer", timeout=WAIT_S).exit_code == 0
    holder = kubelet_sim.wait_for("holder", timeout=WAIT_S)
    assert holder.exit_code == 143
    term = ec_statuses(get_pod(core, ns, "web"))["holder"]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (143, "Error")


@needs_root
def test_run_as_user_and_non_root_policy(kube_cluster: Any, k8s_namespace: str,
                                         core: client.CoreV1Api, kubelet_sim: KubeletSim) -> None:
    ns = k8s_namespace
    make_pod(kube_cluster, core, ns, "web")
    add_ephemeral(
        core, ns, "web",
        ec("nonroot", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); "
                      "grep -E '^(Uid|Gid):' /proc/self/status",
           securityContext={"runAsUser": 65532}),
        ec("grouped", "echo $(id -u):$(id -g)",
           securityContext={"runAsUser": 1234, "runAsGroup": 5678}),
        ec("rootbad", "echo should not run", securityContext={"runAsNonRoot": True,
                                                             "runAsUser": 0}),
    )
    rec = kubelet_sim.wait_for("nonroot", timeout=WAIT_S)
    assert (rec.exit_code, rec.uid, rec.gid) == (0, 65532, 0)
    out = logs(kube_cluster, ns, "web", "nonroot").splitlines()
    assert out[0] == "uid=65532 gid=0 groups=0", out
    assert out[1].split()[1:] == ["65532"] * 4, out  # real, effective, saved, fs uid
    assert kubelet_sim.wait_for("grouped", timeout=WAIT_S).exit_code == 0
    assert logs(kube_cluster, ns, "web", "grouped") == "1234:5678\n"

    bad = kubelet_sim.wait_for("rootbad", state="done", timeout=WAIT_S)
    assert not bad.started and bad.exit_code is None
    waiting = ec_statuses(get_pod(core, ns, "web"))["rootbad"]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert waiting["message"].startswith("container's runAsUser breaks non-root policy")


# --------------------------------------------------------------------------------------------
# 2. the simulator, Status mode
# --------------------------------------------------------------------------------------------


def test_status_mode_writes_given_states(kube_cluster: Any, k8s_namespace: str,
                                         core: client.CoreV1Api, kubelet_sim: KubeletSim) -> None:
    ns = k8s_namespace
    pod = make_pod(kube_cluster, core, ns, "web")
    pull = 'failed to pull image "registry.invalid/helper:1": not found'
    kubelet_sim.policy("pull-", Status([Waiting("ErrImagePull", pull)]))
    kubelet_sim.policy("cfg-", Status([
        Waiting("ContainerCreating"),
        Waiting("CreateContainerConfigError", "container's runAsUser breaks non-root policy"),
    ]))
    kubelet_sim.policy(lambda p, c: Status([
        Waiting("ContainerCreating"), Running(), Log("working", "something broke"),
        Sleep(0.2), Terminated(2),
    ]) if c.get("terminationMessagePolicy") == "FallbackToLogsOnError" else None)
    seen = StateWatch(core, ns, "web", pod["metadata"]["resourceVersion"],
                      lambda s: "terminated" in (s.get("fake") or [{}])[-1]
                      and len(s.get("cfg-1") or []) == 2 and bool(s.get("pull-1")))
    add_ephemeral(core, ns, "web",
                  ec("pull-1", "true"), ec("cfg-1", "true"),
                  ec("fake", "true", terminationMessagePolicy="FallbackToLogsOnError"))
    history = seen.join()

    assert history["pull-1"] == [{"waiting": {"reason": "ErrImagePull", "message": pull}}]
    assert history["cfg-1"][-1]["waiting"]["reason"] == "CreateContainerConfigError"
    assert StateWatch.kinds(history["fake"]) == ["waiting", "running", "terminated"]
    term = ec_statuses(get_pod(core, ns, "web"))["fake"]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (2, "Error")
    assert term["message"] == "working\nsomething broke\n"
    assert logs(kube_cluster, ns, "web", "fake") == "working\nsomething broke\n"
    # nothing was run, and a container that never started has no log
    for name in ("pull-1", "cfg-1", "fake"):
        rec = kubelet_sim.record(name)
        assert rec is not None and rec.mode == "status" and rec.pid is None
    with pytest.raises(ApiException):
        core.read_namespaced_pod_log("web", ns, container="pull-1", _request_timeout=15)


# --------------------------------------------------------------------------------------------
# cleanup
# --------------------------------------------------------------------------------------------


@needs_root
def test_teardown_leaves_nothing_behind(kube_cluster: Any, k8s_namespace: str,
                                        core: client.CoreV1Api, tmp_path: Path) -> None:
    ns = k8s_namespace
    make_pod(kube_cluster, core, ns, "web")
    make_pod(kube_cluster, core, ns, "gone")
    sim = KubeletSim(kube_cluster.kubeconfig, ns, default=Exec(), workdir=tmp_path).start()
    try:
        # a long runner that also leaves a background child, and the same in another pod
        add_ephemeral(core, ns, "web", ec("long", "sleep 301 & sleep 302"),
                      ec("quick", "echo hi"))
        add_ephemeral(core, ns, "gone", ec("long", "sleep 303"))
        long_web = sim.wait_for("long", pod="web", state="running", timeout=WAIT_S)
        long_gone = sim.wait_for("long", pod="gone", state="running", timeout=WAIT_S)
        sim.wait_for("quick", timeout=WAIT_S)
        sim.start_target_process("web", "app", ["sleep", "304"])
        left = sim.leftovers()
        assert len(left["processes"]) >= 5, left  # inits, nsenter, shells, sleeps
        assert len(left["netns"]) == 2 and left["files"], left
        netns = list(left["netns"])
        pids = [long_web.pid, long_gone.pid]
        assert all(pids), pids
        logs_objects = client.CustomObjectsApi(core.api_client).list_namespaced_custom_object(
            "kwok.x-k8s.io", "v1alpha1", ns, "logs", _request_timeout=15)["items"]
        assert {o["metadata"]["name"] for o in logs_objects} == {"web", "gone"}

        # like a kubelet: a deleted pod's containers are killed
        core.delete_namespaced_pod("gone", ns, grace_period_seconds=0)
        kube_cluster.wait_for("pod gone's container killed",
                              lambda: not Path(f"/proc/{long_gone.pid}").exists(), timeout=WAIT_S)
    finally:
        t0 = time.monotonic()
        sim.close()
        took = time.monotonic() - t0
    assert took < 30, took
    assert sim.leftovers() == {"processes": [], "netns": [], "files": []}
    # and checked independently of the simulator's own bookkeeping
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    assert not any(n in listed for n in netns), listed
    assert not sim.workdir.exists()
    assert list(tmp_path.iterdir()) == []
    marker = f"KUBELET_SIM_ID={sim.id}".encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            assert marker not in environ, proc
    assert client.CustomObjectsApi(core.api_client).list_namespaced_custom_object(
        "kwok.x-k8s.io", "v1alpha1", ns, "logs", _request_timeout=15)["items"] == []
