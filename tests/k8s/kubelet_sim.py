"""A kubelet stand-in for *ephemeral containers* on kwok's fake nodes (test infrastructure).

kwok fakes nodes and pod status but runs nothing. ``KubeletSim`` watches (polls) the pods of one
namespace and, for every ephemeral container in ``spec.ephemeralContainers`` it has not handled
yet, plays the kubelet's part according to a per-test policy:

``Exec()``
    The real thing. The container's ``command`` + ``args`` run as a real process on this host,
    inside namespaces built the way Kubernetes builds them:

    - one network namespace per pod (``ip netns add``, ``lo`` up), joined by all its containers,
      so nothing they do touches the host network;
    - one PID namespace (and mount namespace with its own ``/proc``) per (pod, target container):
      a long-lived init (``unshare --pid --fork --mount-proc --kill-child sleep infinity``) is
      started per ``targetContainerName`` (or per pod with ``shareProcessNamespace``, or per
      container without a target), and each container is started in it with ``nsenter --target
      <init> --pid --mount --net``, so ``pgrep``/``pkill`` inside see exactly those processes;
    - ``securityContext`` (container over pod) ``runAsUser``/``runAsGroup`` are applied with
      ``setpriv --reuid --regid --clear-groups``; ``runAsNonRoot`` is checked like the kubelet
      does (``CreateContainerConfigError``).

    stdout/stderr are written, in the CRI log format the kubelet uses, to a file that kwok serves
    through the pod log API (a ``kwok.x-k8s.io/v1alpha1 Logs`` object per pod, which needs
    ``kwokctl create cluster --enable-crds Logs,ClusterLogs``; see tests/k8s/conftest.py).
    The filesystem is the host's (there is no image): the command runs the host's binaries.
``Status(steps)``
    Runs nothing; writes the given sequence of states (``Waiting``, ``Running``, ``Log``,
    ``Terminated``, ``Sleep``), for causes that cannot happen for real here (``ErrImagePull``...).
``Ignore()``
    Never touches the container (a kubelet that never gets to it).

Status is written through the ``pods/status`` subresource as a kubelet writes it: ``waiting
{reason: ContainerCreating}``, then ``running {startedAt}``, then ``terminated {exitCode, reason:
Completed|Error, startedAt, finishedAt, message}``; with ``terminationMessagePolicy:
FallbackToLogsOnError`` and a non-zero exit, ``message`` is the tail of the log (last 80 lines,
at most 2048 bytes). Each write is a read-modify-write of ``status.ephemeralContainerStatuses``
that keeps the other entries and retries on conflict. (kwok's pod stages patch only the fields
they own, so they do not overwrite this list; the tests check that.)

``close()`` kills every process it started (the PID namespace inits take their namespaces down),
deletes its network namespaces, its ``Logs`` objects and its files; ``leftovers()`` reports
anything that survived. This module must not import from ``chaos/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Every process the simulator starts carries ``KUBELET_SIM_ID=<sim id>`` in its environment.
SIM_ENV = "KUBELET_SIM_ID"
KWOK_GROUP, KWOK_VERSION = "kwok.x-k8s.io", "v1alpha1"
#: The kubelet's limits for ``FallbackToLogsOnError`` (kubecontainer.MaxContainerTermination*).
TERMINATION_LOG_LINES = 80
TERMINATION_LOG_BYTES = 2048
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REQUEST_TIMEOUT = 15
_TOOLS = ("ip", "unshare", "nsenter", "setpriv")


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exec:
    """Run the container's command for real (see the module docstring).

    ``timeout``: SIGKILL the container after this many seconds (exit code 137), a safety net for
    tests; a real kubelet has no such limit. ``env``: extra environment variables."""

    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Running:
    """``state.running``; also makes the (possibly empty) log servable."""


@dataclass(frozen=True)
class Log:
    """Append lines to the container's log (and make it servable)."""

    lines: tuple[str, ...]
    stream: str = "stdout"

    def __init__(self, *lines: str, stream: str = "stdout") -> None:
        object.__setattr__(self, "lines", tuple(lines))
        object.__setattr__(self, "stream", stream)


@dataclass(frozen=True)
class Terminated:
    """``state.terminated``. ``reason`` defaults to Completed/Error by exit code; ``message``
    defaults to what the kubelet would write (the log tail for FallbackToLogsOnError + non-zero
    exit, else nothing)."""

    exit_code: int
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Waiting | Running | Log | Terminated | Sleep


@dataclass(frozen=True)
class Status:
    """Write these states (in order, one status write each) and run nothing."""

    steps: tuple[Step, ...]

    def __init__(self, steps: Iterable[Step]) -> None:
        object.__setattr__(self, "steps", tuple(steps))


@dataclass(frozen=True)
class Ignore:
    """Leave the container alone: no status, no log."""


Policy = Exec | Status | Ignore
#: ``rule(pod, container) -> Policy | None``; ``pod`` and ``container`` are API dicts (camelCase).
Rule = Callable[[Mapping[str, Any], Mapping[str, Any]], "Policy | None"]


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class ContainerRecord:
    """What the simulator did for one ephemeral container."""

    pod: str
    pod_uid: str
    container: str
    target: str | None
    policy: Policy
    mode: str  # "exec" | "status" | "ignore"
    log_path: Path | None = None
    #: True once the process was started (exec) or a Running step written (status).
    started: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    #: exec: host pid of the container's main process, and the uid/gid it ran as.
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    #: PID namespace key: target container name, "pod" (shareProcessNamespace) or "ec:<name>".
    pid_namespace: str | None = None
    #: Every ``state`` written to the API (and accepted), in order.
    states: list[dict[str, Any]] = field(default_factory=list)
    #: Errors (API writes that failed, launch failures).
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def state(self) -> str | None:
        """Kind of the last state written: "waiting", "running", "terminated" or None."""
        return next(iter(self.states[-1]), None) if self.states else None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cri_ts() -> bytes:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def _cri_content(line: bytes) -> bytes:
    """Log content of one CRI log line: ``<ts> <stream> <F|P> <content>``."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 4:
        return b""
    return parts[3] + (b"\n" if parts[2] == b"F" else b"")


def log_tail(path: Path, lines: int = TERMINATION_LOG_LINES,
             limit: int = TERMINATION_LOG_BYTES) -> str:
    """What the kubelet puts in ``message`` for FallbackToLogsOnError: the content of the last
    ``lines`` log lines, of which the last ``limit`` bytes."""
    try:
        records = path.read_bytes().splitlines(keepends=True)[-lines:]
    except OSError:
        return ""
    data = b"".join(_cri_content(r) for r in records)
    return data[-limit:].decode(errors="replace")


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _kill(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _merged_security_context(pod: Mapping[str, Any], c: Mapping[str, Any]) -> dict[str, Any]:
    """Effective runAsUser/runAsGroup/runAsNonRoot: the container's over the pod's."""
    merged: dict[str, Any] = {}
    psc = pod.get("spec", {}).get("securityContext") or {}
    csc = c.get("securityContext") or {}
    for key in ("runAsUser", "runAsGroup", "runAsNonRoot"):
        value = csc.get(key, psc.get(key))
        if value is not None:
            merged[key] = value
    return merged


@dataclass
class _PidNs:
    key: str
    unshare: subprocess.Popen[bytes]
    init_pid: int
    inode: str


@dataclass
class _PodState:
    name: str
    uid: str
    netns: str | None = None
    pidns: dict[str, _PidNs] = field(default_factory=dict)
    #: container name -> log file served by kwok for it
    logs: dict[str, Path] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    gone: bool = False


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class KubeletSim:
    """Acts as the kubelet for the ephemeral containers of the pods in one namespace.

    ``policies``: ``{name prefix: Policy}``; ``policy()`` adds more rules (prefixes or
    callables). Rules are tried in the order they were added, first match wins; ``default``
    applies when none matches (``Exec()`` unless given; ``Ignore()`` leaves unmatched containers
    alone). Use as a context manager, or call ``start()`` and ``close()``.
    """

    def __init__(
        self,
        kubeconfig: str,
        namespace: str,
        *,
        policies: Mapping[str, Policy] | None = None,
        default: Policy | None = None,
        workdir: str | Path | None = None,
        poll_interval: float = 0.2,
        log_serve_timeout: float = 15.0,
    ) -> None:
        from kubernetes import client
        from kubernetes import config as k8s_config

        self.id = secrets.token_hex(4)
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.default: Policy | None = Exec() if default is None else default
        self.poll_interval = poll_interval
        self.log_serve_timeout = log_serve_timeout
        self._lock = threading.RLock()
        self._rules: list[tuple[str | Rule, Policy | None]] = []
        for prefix, pol in (policies or {}).items():
            self.policy(prefix, pol)
        self.workdir = Path(
            tempfile.mkdtemp(prefix=f"kubelet-sim-{self.id}-", dir=workdir and str(workdir))
        )
        cfg = client.Configuration()
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        cfg.connection_pool_maxsize = 32
        self._api = client.ApiClient(cfg)
        self._core = client.CoreV1Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._stop = threading.Event()
        self._closed = False
        self._pods: dict[str, _PodState] = {}  # by uid
        self._handled: set[tuple[str, str]] = set()  # (pod uid, container)
        self._records: dict[tuple[str, str], ContainerRecord] = {}  # (pod name, container)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._threads: list[threading.Thread] = []
        self._netns: set[str] = set()
        self._pidns_inodes: set[str] = set()
        self._logs_objects: set[str] = set()
        self._poller: threading.Thread | None = None
        #: Errors of the poll loop (API unreachable, ...).
        self.errors: list[str] = []

    # ---------------------------------------------------------------------------- public API

    def policy(self, key: str | Rule, policy: Policy | None = None) -> KubeletSim:
        """Add a rule: a container name prefix with a policy, or a callable
        ``(pod, container) -> Policy | None`` (``policy`` omitted)."""
        if isinstance(key, str) and policy is None:
            raise ValueError("a prefix rule needs a policy")
        with self._lock:
            self._rules.append((key, policy))
        return self

    def start(self) -> KubeletSim:
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._poll_loop, name=f"kubelet-sim-{self.id}", daemon=True
            )
            self._poller.start()
        return self

    def __enter__(self) -> KubeletSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def records(self) -> list[ContainerRecord]:
        with self._lock:
            return list(self._records.values())

    def summary(self) -> dict[str, dict[str, Any]]:
        """``{container name: {pod, mode, started, exit_code, reason, log_path}}`` (keys are
        ``pod/container`` when a name occurs in several pods)."""
        recs = self.records
        names = [r.container for r in recs]
        return {
            (r.container if names.count(r.container) == 1 else f"{r.pod}/{r.container}"): {
                "pod": r.pod, "mode": r.mode, "started": r.started, "exit_code": r.exit_code,
                "reason": r.reason, "log_path": r.log_path,
            }
            for r in recs
        }

    def record(self, container: str, pod: str | None = None) -> ContainerRecord | None:
        """The record of ephemeral container ``container`` (of pod ``pod``, if several pods
        have one of that name)."""
        with self._lock:
            found = [r for (p, c), r in self._records.items()
                     if c == container and (pod is None or p == pod)]
        if len(found) > 1:
            raise LookupError(f"several pods have an ephemeral container {container!r}; pass pod=")
        return found[0] if found else None

    def wait_for(self, container: str, *, pod: str | None = None, state: str = "terminated",
                 timeout: float = 30.0) -> ContainerRecord:
        """Wait until the simulator has written ``state`` ("waiting", "running", "terminated")
        for the container, or has finished with it (``state="done"``)."""
        deadline = time.monotonic() + timeout
        while True:
            rec = self.record(container, pod)
            if rec is not None:
                if state == "done" and rec.done.is_set():
                    return rec
                if any(state in s for s in rec.states):
                    return rec
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"kubelet-sim: {container!r} did not reach {state!r} within {timeout:.0f}s; "
                    f"record: {rec!r}; poll errors: {self.errors[-3:]}"
                )
            time.sleep(0.05)

    def log_path(self, pod: str, container: str) -> Path:
        """Where the log of ``pod``/``container`` is (or will be) kept."""
        return self.workdir / "pods" / f"{self.namespace}_{pod}" / container / "0.log"

    def serve_log(self, pod: str, container: str, path: str | Path | None = None) -> Path:
        """Make kwok serve a log file for any container of ``pod`` (a regular one too) through
        the pod log API; returns the file, which must hold CRI-format lines (``write_log``)."""
        state = self._pod_state_by_name(pod)
        return self._register_log(state, container, Path(path) if path else None)

    def write_log(self, pod: str, container: str, *lines: str, stream: str = "stdout") -> Path:
        """Append lines to a container's served log (registering it if needed)."""
        path = self.serve_log(pod, container)
        with open(path, "ab") as fh:
            for line in lines:
                fh.write(b"%s %s F %s\n" % (_cri_ts(), stream.encode(), line.encode()))
        return path

    def start_target_process(self, pod: str, target: str, argv: Sequence[str]) -> int:
        """Start ``argv`` in the PID namespace of (``pod``, ``target``) as if it were that
        container's own process, so that ephemeral containers targeting it can see (and kill)
        it. Its output goes to the target container's served log. Returns its host pid."""
        _require_exec_tools()
        state = self._pod_state_by_name(pod)
        raw = self._get_pod(pod)
        key = "pod" if raw["spec"].get("shareProcessNamespace") else target
        ns = self._ensure_pidns(state, key)
        log = self._register_log(state, target, None)
        proc = self._spawn(ns, list(argv), env={"HOSTNAME": pod}, uid=None, gid=None, cwd="/")
        self._pump(proc, log)
        return self._inner_pid(proc) or proc.pid

    def leftovers(self) -> dict[str, list[str]]:
        """Anything of this simulator still alive: processes (by marker env or PID namespace),
        network namespaces, files. Empty lists after ``close()``."""
        procs = []
        marker = f"{SIM_ENV}={self.id}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            ns = _readlink(f"/proc/{entry}/ns/pid")
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker in environ or (ns is not None and ns in self._pidns_inodes):
                procs.append(f"{entry}: {cmd.decode(errors='replace')[:100]}")
        netns = sorted(n for n in self._netns if Path("/run/netns", n).exists())
        files = [str(self.workdir)] if self.workdir.exists() else []
        return {"processes": procs, "netns": netns, "files": files}

    def close(self) -> None:
        """Kill everything started, delete the network namespaces, the Logs objects and the
        files. Idempotent."""
        with self._lock:  # no process, netns or pidns is created after this
            if self._closed:
                return
            self._closed = True
            self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        with self._lock:
            pods = list(self._pods.values())
        for st in pods:
            self._kill_pod(st)
        for proc in list(self._procs):
            if proc.returncode is None:
                _kill_group(proc)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for t in list(self._threads):
            t.join(timeout=10)
        for name in sorted(self._logs_objects):
            with contextlib.suppress(Exception):
                self._custom.delete_namespaced_custom_object(
                    KWOK_GROUP, KWOK_VERSION, self.namespace, "logs", name,
                    _request_timeout=REQUEST_TIMEOUT,
                )
        for name in sorted(self._netns):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30,
                           check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._api.close()

    # ---------------------------------------------------------------------------- polling

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                del self.errors[:-50]
            self._stop.wait(self.poll_interval)

    def _poll_once(self) -> None:
        resp = self._core.list_namespaced_pod(
            self.namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        pods = json.loads(resp.data)["items"]
        seen = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod["spec"]
            uid = meta["uid"]
            seen.add(uid)
            if meta.get("deletionTimestamp"):
                self._pod_gone(uid)
                continue
            if not spec.get("nodeName") or pod.get("status", {}).get("phase") in (
                "Succeeded", "Failed"
            ):
                continue  # not on a node yet / finished: a kubelet starts nothing
            finished = {s.get("name") for s in
                        pod.get("status", {}).get("ephemeralContainerStatuses") or []
                        if "terminated" in (s.get("state") or {})}
            for c in spec.get("ephemeralContainers") or []:
                key = (uid, c["name"])
                if key in self._handled:
                    continue
                self._handled.add(key)
                if c["name"] not in finished:  # ran before this simulator: never again
                    self._begin(pod, c)
        with self._lock:
            gone = [uid for uid in self._pods if uid not in seen]
        for uid in gone:
            self._pod_gone(uid)

    def _pod_gone(self, uid: str) -> None:
        with self._lock:
            st = self._pods.get(uid)
        if st is not None and not st.gone:
            self._kill_pod(st)

    def _choose(self, pod: Mapping[str, Any], c: Mapping[str, Any]) -> Policy | None:
        with self._lock:
            rules = list(self._rules)
        for key, pol in rules:
            if isinstance(key, str):
                if c["name"].startswith(key):
                    return pol
            else:
                chosen = key(pod, c)
                if chosen is not None:
                    return chosen
        return self.default

    def _begin(self, pod: dict[str, Any], c: dict[str, Any]) -> None:
        pol = self._choose(pod, c) or Ignore()
        mode = {Exec: "exec", Status: "status", Ignore: "ignore"}[type(pol)]
        name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
        rec = ContainerRecord(pod=name, pod_uid=uid, container=c["name"],
                              target=c.get("targetContainerName"), policy=pol, mode=mode)
        with self._lock:
            self._records[(name, c["name"])] = rec
            st = self._pods.setdefault(uid, _PodState(name=name, uid=uid))
        if isinstance(pol, Ignore):
            rec.done.set()
            return
        run = self._run_exec if isinstance(pol, Exec) else self._run_status
        t = threading.Thread(target=self._guarded, args=(run, st, pod, c, rec, pol),
                             name=f"kubelet-sim-{c['name']}", daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _guarded(self, run: Callable[..., None], st: _PodState, pod: dict[str, Any],
                 c: dict[str, Any], rec: ContainerRecord, pol: Policy) -> None:
        try:
            run(st, pod, c, rec, pol)
        except Exception as exc:
            rec.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            rec.done.set()

    # ---------------------------------------------------------------------------- status mode

    def _run_status(self, st: _PodState, pod: dict[str, Any], c: dict[str, Any],
                    rec: ContainerRecord, pol: Status) -> None:
        for step in pol.steps:
            if self._stop.is_set():
                return
            if isinstance(step, Sleep):
                self._stop.wait(step.seconds)
            elif isinstance(step, Waiting):
                waiting = {"reason": step.reason}
                if step.message:
                    waiting["message"] = step.message
                self._write_state(st, c, rec, {"waiting": waiting})
            elif isinstance(step, Running):
                rec.log_path = self._register_log(st, c["name"], None)
                rec.started, rec.started_at = True, _now()
                self._write_state(st, c, rec, {"running": {"startedAt": rec.started_at}})
            elif isinstance(step, Log):
                rec.log_path = self._register_log(st, c["name"], None)
                with open(rec.log_path, "ab") as fh:
                    for line in step.lines:
                        fh.write(b"%s %s F %s\n" % (_cri_ts(), step.stream.encode(),
                                                    line.encode()))
            elif isinstance(step, Terminated):
                self._terminate(st, c, rec, step.exit_code, step.reason, step.message)

    # ---------------------------------------------------------------------------- exec mode

    def _run_exec(self, st: _PodState, pod: dict[str, Any], c: dict[str, Any],
                  rec: ContainerRecord, pol: Exec) -> None:
        self._write_state(st, c, rec, {"waiting": {"reason": "ContainerCreating"}})
        sc = _merged_security_context(pod, c)
        uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
        if sc.get("runAsNonRoot"):
            pod_desc = f"{st.name}_{self.namespace}({st.uid})"
            if uid == 0:
                err = (f"container's runAsUser breaks non-root policy (pod: \"{pod_desc}\", "
                       f"container: {c['name']})")
            elif uid is None:  # no image user to look at: the image "runs as root"
                err = (f"container has runAsNonRoot and image will run as root (pod: "
                       f"\"{pod_desc}\", container: {c['name']})")
            else:
                err = ""
            if err:
                self._write_state(st, c, rec, {"waiting": {
                    "reason": "CreateContainerConfigError", "message": err}})
                return
        argv = list(c.get("command") or []) + list(c.get("args") or [])
        if not c.get("command"):
            self._write_state(st, c, rec, {"waiting": {
                "reason": "CreateContainerError",
                "message": "kubelet-sim: no command; the image's entrypoint cannot be run here"}})
            return
        try:
            _require_exec_tools()
        except RuntimeError as exc:
            self._write_state(st, c, rec, {"waiting": {
                "reason": "CreateContainerError", "message": f"kubelet-sim: {exc}"}})
            raise
        target = c.get("targetContainerName")
        key = "pod" if pod["spec"].get("shareProcessNamespace") else (
            target or f"ec:{c['name']}")
        rec.pid_namespace = key
        rec.log_path = self._register_log(st, c["name"], None)
        ns = self._ensure_pidns(st, key)
        env = {"HOSTNAME": st.name, **{e["name"]: e.get("value", "")
                                      for e in c.get("env") or [] if "valueFrom" not in e},
               **pol.env}
        wd = c.get("workingDir") or "/"
        proc = self._spawn(ns, argv, env=env, uid=uid or None, gid=gid or None,
                           cwd=wd if os.path.isdir(wd) else "/")
        rec.uid, rec.gid = uid or 0, gid or 0
        rec.started, rec.started_at = True, _now()
        readers = self._pump(proc, rec.log_path)
        rec.pid = self._inner_pid(proc)
        self._write_state(st, c, rec, {"running": {"startedAt": rec.started_at}})
        _wait_unreaped(proc, pol.timeout)
        # Like a runtime tearing down the container: whatever it left behind goes too (and on
        # timeout, the container itself). nsenter is not reaped yet, so its pgid is still ours.
        _kill_group(proc)
        rc = proc.wait(timeout=10)
        for r in readers:
            r.join(timeout=2)
        if self._stop.is_set():
            rec.exit_code = 128 - rc if rc < 0 else rc
            return
        self._terminate(st, c, rec, 128 - rc if rc < 0 else rc, None, None)

    def _spawn(self, ns: _PidNs, argv: list[str], *, env: Mapping[str, str], uid: int | None,
               gid: int | None, cwd: str) -> subprocess.Popen[bytes]:
        cmd = ["nsenter", f"--target={ns.init_pid}", "--pid", "--mount", "--net"]
        if uid is not None or gid is not None:
            cmd += ["setpriv", f"--reuid={uid or 0}", f"--regid={gid or 0}", "--clear-groups",
                    "--"]
        full_env = {"PATH": DEFAULT_PATH, "HOME": "/root" if not uid else "/",
                    **env, SIM_ENV: self.id}
        with self._lock:  # close() takes the lock after setting _stop: nothing slips past it
            if self._stop.is_set():
                raise RuntimeError("kubelet-sim is closing")
            proc = subprocess.Popen(
                cmd + argv, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
            self._procs.append(proc)
        return proc

    def _inner_pid(self, proc: subprocess.Popen[bytes], timeout: float = 2.0) -> int | None:
        """Host pid of the container process nsenter forked."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            kids = _children(proc.pid)
            if kids:
                return kids[0]
            time.sleep(0.01)
        return None

    def _pump(self, proc: subprocess.Popen[bytes], path: Path) -> list[threading.Thread]:
        """Copy stdout/stderr to ``path`` in the CRI log format, line by line as they come."""
        lock = threading.Lock()

        def copy(stream: Any, name: bytes) -> None:
            buf = b""
            fd = stream.fileno()
            # unbuffered append: every record is one write(2), so kwok sees whole lines only
            with open(path, "ab", buffering=0) as out:
                while True:
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        break
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    if lines:
                        with lock:
                            out.write(b"".join(b"%s %s F %s\n" % (_cri_ts(), name, ln)
                                               for ln in lines))
                if buf:  # a last line without newline: a partial record, as containerd does
                    with lock:
                        out.write(b"%s %s P %s\n" % (_cri_ts(), name, buf))
            stream.close()

        threads = [
            threading.Thread(target=copy, args=(proc.stdout, b"stdout"), daemon=True),
            threading.Thread(target=copy, args=(proc.stderr, b"stderr"), daemon=True),
        ]
        for t in threads:
            t.start()
        return threads

    # ---------------------------------------------------------------------------- namespaces

    def _ensure_netns(self, st: _PodState) -> str:
        with st.lock:
            if st.netns is None:
                name = f"ksim-{self.id}-{st.uid[:8]}"
                with self._lock:
                    if self._stop.is_set():
                        raise RuntimeError("kubelet-sim is closing")
                    self._netns.add(name)
                    subprocess.run(["ip", "netns", "add", name], check=True,
                                   capture_output=True, timeout=30)
                subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True,
                               capture_output=True, timeout=30)
                st.netns = name
            return st.netns

    def _ensure_pidns(self, st: _PodState, key: str) -> _PidNs:
        with st.lock:
            if st.gone:
                raise RuntimeError(f"pod {st.name} is gone")
            ns = st.pidns.get(key)
            if ns is not None and ns.unshare.poll() is None:
                return ns
            netns = self._ensure_netns(st)
            with self._lock:
                if self._stop.is_set():
                    raise RuntimeError("kubelet-sim is closing")
                proc = subprocess.Popen(
                    ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--pid", "--fork",
                     "--mount-proc", "--kill-child", "sleep", "infinity"],
                    env={"PATH": DEFAULT_PATH, SIM_ENV: self.id}, cwd="/",
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    start_new_session=True,
                )
                self._procs.append(proc)
            own = _readlink("/proc/self/ns/pid")
            deadline = time.monotonic() + 10
            init_pid, inode = None, None
            while time.monotonic() < deadline and proc.poll() is None:
                for kid in _children(proc.pid):
                    inode = _readlink(f"/proc/{kid}/ns/pid")
                    try:
                        cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    # /proc is mounted once the child has exec'd sleep
                    if inode and inode != own and cmd.startswith(b"sleep\0"):
                        init_pid = kid
                        break
                if init_pid:
                    break
                time.sleep(0.01)
            if not init_pid or not inode:
                _kill(proc.pid)
                err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None \
                    and proc.stderr else ""
                raise RuntimeError(f"could not start a PID namespace init: {err}")
            with self._lock:
                self._pidns_inodes.add(inode)
            ns = _PidNs(key=key, unshare=proc, init_pid=init_pid, inode=inode)
            st.pidns[key] = ns
            return ns

    def _kill_pod(self, st: _PodState) -> None:
        """What the kubelet does when a pod goes: kill its containers (every PID namespace
        init takes its namespace down) and drop the pod's network namespace."""
        with st.lock:
            st.gone = True
            for ns in st.pidns.values():
                if ns.unshare.poll() is None:  # else init_pid may be reused already
                    _kill(ns.init_pid)
                    _kill_group(ns.unshare)
            for ns in st.pidns.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    ns.unshare.wait(timeout=10)
                if ns.unshare.stderr:
                    ns.unshare.stderr.close()
            if st.netns and not self._closed:
                subprocess.run(["ip", "netns", "delete", st.netns], capture_output=True,
                               timeout=30, check=False)

    # ---------------------------------------------------------------------------- logs

    def _register_log(self, st: _PodState, container: str, path: Path | None) -> Path:
        """Create the log file and point kwok at it (Logs object named after the pod), then wait
        until the pod log API serves it."""
        with st.lock:
            have = st.logs.get(container)
            if have is not None and (path is None or path == have):
                return have
            path = path or self.log_path(st.name, container)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            st.logs[container] = path
            self._apply_logs_object(st)
        self._wait_log_served(st.name, container)
        return path

    def _apply_logs_object(self, st: _PodState) -> None:
        from kubernetes.client.rest import ApiException

        spec = {"logs": [{"containers": [c], "logsFile": str(p), "follow": True}
                         for c, p in sorted(st.logs.items())]}
        body: dict[str, Any] = {
            "apiVersion": f"{KWOK_GROUP}/{KWOK_VERSION}", "kind": "Logs",
            "metadata": {"name": st.name, "namespace": self.namespace,
                         "labels": {"kubelet-sim": self.id}},
            "spec": spec,
        }
        for _ in range(20):
            try:
                cur = self._custom.get_namespaced_custom_object(
                    KWOK_GROUP, KWOK_VERSION, self.namespace, "logs", st.name,
                    _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                try:
                    self._custom.create_namespaced_custom_object(
                        KWOK_GROUP, KWOK_VERSION, self.namespace, "logs", body,
                        _request_timeout=REQUEST_TIMEOUT)
                except ApiException as exc2:
                    if exc2.status == 409:
                        continue
                    raise
                self._logs_objects.add(st.name)
                return
            cur["spec"] = spec
            try:
                self._custom.replace_namespaced_custom_object(
                    KWOK_GROUP, KWOK_VERSION, self.namespace, "logs", st.name, cur,
                    _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status == 409:
                    continue
                raise
            self._logs_objects.add(st.name)
            return
        raise RuntimeError(f"could not update Logs {self.namespace}/{st.name}: conflicts")

    def _wait_log_served(self, pod: str, container: str) -> None:
        deadline = time.monotonic() + self.log_serve_timeout
        last: Exception | None = None
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                self._core.read_namespaced_pod_log(
                    pod, self.namespace, container=container, limit_bytes=1,
                    _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                return
            except Exception as exc:
                last = exc
            time.sleep(0.05)
        raise RuntimeError(f"kwok does not serve the log of {pod}/{container}: {last}")

    # ---------------------------------------------------------------------------- status

    def _terminate(self, st: _PodState, c: Mapping[str, Any], rec: ContainerRecord,
                   exit_code: int, reason: str | None, message: str | None) -> None:
        rec.exit_code = exit_code
        rec.finished_at = _now()
        rec.reason = reason or ("Completed" if exit_code == 0 else "Error")
        if message is None:
            message = ""
            if (c.get("terminationMessagePolicy") == "FallbackToLogsOnError"
                    and exit_code != 0 and rec.log_path is not None):
                message = log_tail(rec.log_path)
        rec.message = message
        term: dict[str, Any] = {
            "exitCode": exit_code, "reason": rec.reason,
            "startedAt": rec.started_at or rec.finished_at, "finishedAt": rec.finished_at,
        }
        if rec.mode == "exec":
            term["containerID"] = self._container_id(rec)
        if message:
            term["message"] = message
        self._write_state(st, c, rec, {"terminated": term})

    def _container_id(self, rec: ContainerRecord) -> str:
        return "kubelet-sim://" + uuid.uuid5(uuid.NAMESPACE_URL,
                                             f"{rec.pod_uid}/{rec.container}").hex

    def _write_state(self, st: _PodState, c: Mapping[str, Any], rec: ContainerRecord,
                     state: dict[str, Any]) -> None:
        """Read-modify-write ``status.ephemeralContainerStatuses[name=c]`` through pods/status,
        keeping the other entries, retrying on conflict."""
        from kubernetes.client.rest import ApiException

        entry: dict[str, Any] = {
            "name": c["name"], "image": c.get("image", ""), "imageID": "",
            "ready": False, "restartCount": 0, "state": state, "lastState": {},
        }
        if rec.started:
            entry["imageID"] = f"kubelet-sim://{c.get('image', '')}"
            if rec.mode == "exec":
                entry["containerID"] = self._container_id(rec)
        for _ in range(30):
            if self._stop.is_set():
                return
            try:
                resp = self._core.read_namespaced_pod(
                    st.name, self.namespace, _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT)
                pod = json.loads(resp.data)
                if pod["metadata"]["uid"] != st.uid:
                    return
                status = pod.setdefault("status", {})
                others = [s for s in status.get("ephemeralContainerStatuses") or []
                          if s.get("name") != c["name"]]
                status["ephemeralContainerStatuses"] = sorted(
                    [*others, entry], key=lambda s: s.get("name", ""))
                self._core.replace_namespaced_pod_status(
                    st.name, self.namespace, pod, _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT)
                rec.states.append(state)  # only once the API has it
                return
            except ApiException as exc:
                if exc.status == 409:
                    time.sleep(0.02)
                    continue
                if exc.status == 404:
                    return
                rec.errors.append(f"status write {next(iter(state))}: {exc.status} {exc.body}")
                return
        rec.errors.append(f"status write {next(iter(state))}: gave up after conflicts")

    # ---------------------------------------------------------------------------- misc

    def _get_pod(self, name: str) -> dict[str, Any]:
        resp = self._core.read_namespaced_pod(name, self.namespace, _preload_content=False,
                                              _request_timeout=REQUEST_TIMEOUT)
        return json.loads(resp.data)  # type: ignore[no-any-return]

    def _pod_state_by_name(self, name: str) -> _PodState:
        uid = self._get_pod(name)["metadata"]["uid"]
        with self._lock:
            return self._pods.setdefault(uid, _PodState(name=name, uid=uid))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of a process started with ``start_new_session``: nsenter and
    the container processes it forked (and their children)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Wait until ``proc`` exits (True) or ``timeout`` passes (False) without reaping it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while proc.returncode is None:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG):
                return True
        except ChildProcessError:  # reaped by someone else (close())
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _require_exec_tools() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("Exec mode needs root (network/PID namespaces)")
    missing = [t for t in _TOOLS if shutil.which(t, path=DEFAULT_PATH) is None]
    if missing:
        raise RuntimeError(f"Exec mode needs {', '.join(missing)} (util-linux, iproute2)")
