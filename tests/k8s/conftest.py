"""A real Kubernetes control plane for the tests: kube-apiserver, etcd, kube-controller-manager,
kube-scheduler, all built from source by tests/cluster/build.sh and started by
``kwokctl --runtime binary``; kwok fakes the nodes and the pods' status. No Docker.

Fixtures:

``kube_cluster`` (session)
    A running cluster with RBAC on (``--authorization-mode=Node,RBAC``) and 3 fake Ready nodes
    labelled ``type: kwok``. Attributes: ``kubeconfig`` (admin kubeconfig path), ``bin_dir``,
    ``name``, ``workdir``, ``env`` (environment for kubectl/kwokctl) and helpers ``kubectl()``,
    ``api_client()``.
``k8s_namespace`` (function)
    A fresh namespace (with its ``default`` ServiceAccount ready), deleted afterwards.
``kubelet_sim`` (function)
    A ``kubelet_sim.KubeletSim`` for ``k8s_namespace``: runs ephemeral containers for real (or
    writes given states) and serves their logs through kwok; cleaned up afterwards.

Where the binaries come from: ``$CHAOS_TESTBIN`` (a bin dir) if set; otherwise
tests/cluster/build.sh, which is a fast no-op once its cache is built. A failing build fails the
tests when ``$CI`` is set; without Go and outside CI the tests are skipped with a message saying
how to enable them. See docs/test-cluster.md.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "cluster"))
import realnode  # noqa: E402  (tests/cluster/realnode.py: stdlib only, shared with cluster.sh)

BUILD_SH = REPO_ROOT / "tests" / "cluster" / "build.sh"
BUILD_LOG_NAME = "chaos-testbin-build.log"

#: Binaries the cluster needs, all from the bin dir.
REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
)
#: Must match tests/cluster/k8s/go.mod and etcd/go.mod (kwokctl picks flags by these versions).
KUBE_VERSION = "v1.34.4"
ETCD_VERSION = "3.6.16"
FAKE_NODES = 3
#: Label and annotation kwokctl puts on the fake nodes it creates (``kwokctl scale node``).
KWOK_NODE_SELECTOR = {"type": "kwok"}
#: Tolerations that let pods land on kwok fake nodes, whether or not those carry kwok's taint.
KWOK_TOLERATIONS = [
    {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"},
]

CREATE_TIMEOUT_S = float(os.environ.get("CHAOS_K8S_CREATE_TIMEOUT", "180"))
BUILD_TIMEOUT_S = float(os.environ.get("CHAOS_TESTBIN_BUILD_TIMEOUT", "5400"))

T = TypeVar("T")
_BANNER = "!" * 78


# --------------------------------------------------------------------------------------------
# Finding (or building) the binaries
# --------------------------------------------------------------------------------------------


@dataclass
class _BinResult:
    bin_dir: Path | None = None
    action: str = ""  # "fail" or "skip" when bin_dir is None
    message: str = ""


_bin_result: _BinResult | None = None
_bin_lock = threading.Lock()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _check_bin_dir(bin_dir: Path) -> list[str]:
    return [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]


def _resolve_bin_dir(log_dir: Path, say: Callable[[str], None]) -> _BinResult:
    env_dir = os.environ.get("CHAOS_TESTBIN")
    if env_dir:
        bin_dir = Path(env_dir).expanduser().resolve()
        missing = _check_bin_dir(bin_dir)
        if missing:
            return _BinResult(
                action="fail",
                message=f"CHAOS_TESTBIN={env_dir} lacks executable {', '.join(missing)}; point it "
                f"at the bin dir printed by {BUILD_SH.relative_to(REPO_ROOT)} or unset it",
            )
        return _BinResult(bin_dir=bin_dir)

    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / BUILD_LOG_NAME
    say(
        f"kube_cluster: running {BUILD_SH.relative_to(REPO_ROOT)} (a no-op when cached; the first "
        f"build compiles Kubernetes from source, ~15 min on 2 cores); log: {log_path}"
    )
    t0 = time.monotonic()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(
                ["bash", str(BUILD_SH)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                cwd=REPO_ROOT,
            )
        out, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired:
        out, rc = "", -1
        with open(log_path, "a") as log:
            log.write(f"\n[conftest] build.sh timed out after {BUILD_TIMEOUT_S:.0f}s\n")
    build_log = log_path.read_text(errors="replace")
    if rc == 0:
        lines = out.strip().splitlines()
        bin_dir = Path(lines[-1]) if lines else None
        missing = _check_bin_dir(bin_dir) if bin_dir else list(REQUIRED_BINARIES)
        if bin_dir and not missing:
            say(f"kube_cluster: binaries ready in {time.monotonic() - t0:.1f}s: {bin_dir}")
            return _BinResult(bin_dir=bin_dir)
        build_log += f"\n[conftest] build.sh succeeded but printed {out!r}; missing {missing}\n"
    tail = "\n".join(build_log.splitlines()[-60:])
    message = (
        f"{BUILD_SH.relative_to(REPO_ROOT)} failed (exit {rc}); full log: {log_path}\n"
        f"--- last lines ---\n{tail}"
    )
    if _in_ci():
        return _BinResult(action="fail", message=message)
    if shutil.which(os.environ.get("GO", "go")) is None:
        return _BinResult(
            action="skip",
            message=(
                f"\n{_BANNER}\n"
                "SKIPPING Kubernetes tests: Go is not installed, so the test control plane cannot\n"
                "be built. To enable them: install Go >= 1.26 (https://go.dev/dl/), then run\n"
                f"    {BUILD_SH.relative_to(REPO_ROOT)}\n"
                "(or point CHAOS_TESTBIN at a bin dir it produced). See docs/test-cluster.md.\n"
                f"{_BANNER}"
            ),
        )
    return _BinResult(action="fail", message=message)


def _get_bin_result(config: pytest.Config) -> _BinResult:
    global _bin_result
    with _bin_lock:
        if _bin_result is None:
            reporter = config.pluginmanager.get_plugin("terminalreporter")

            def say(msg: str) -> None:
                if reporter is not None:
                    reporter.write_line(msg)

            cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
            log_dir = (
                Path(str(cache.mkdir("chaos-testbin")))
                if cache is not None
                else Path(tempfile.gettempdir())
            )
            _bin_result = _resolve_bin_dir(log_dir, say)
        return _bin_result


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the binaries before the first test runs, so that a cold build (tens of
    minutes) is not counted against any single test's timeout. Only when a selected test needs
    the cluster."""
    if session.config.option.collectonly:
        return
    if any("kube_cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        result = _get_bin_result(session.config)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if result.action == "skip" and reporter is not None:
            reporter.write_line(result.message, yellow=True, bold=True)


# --------------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------------


def _run(
    args: list[str], env: dict[str, str], timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"`{' '.join(args)}` did not finish within {timeout:.0f}s\n"
            f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        ) from exc
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(args)}` failed with exit code {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class KubeCluster:
    name: str
    bin_dir: str
    workdir: str
    #: Admin kubeconfig of the cluster (path).
    kubeconfig: str
    #: Environment for kubectl/kwokctl: bin dir first on PATH, KUBECONFIG and KWOK_WORKDIR set.
    env: dict[str, str] = field(repr=False)
    create_seconds: float = 0.0
    #: ``/version`` gitVersion the apiserver reports.
    kube_version: str = KUBE_VERSION
    #: Put these on a pod spec so it lands on a kwok fake node.
    node_selector: dict[str, str] = field(default_factory=lambda: dict(KWOK_NODE_SELECTOR))
    tolerations: list[dict[str, str]] = field(
        default_factory=lambda: [dict(t) for t in KWOK_TOLERATIONS]
    )
    #: ``wait_for(what, probe, timeout)``: poll until truthy, fail after ``timeout`` seconds.
    wait_for = staticmethod(wait_for)
    _deleted: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def kubectl(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(Path(self.bin_dir) / "kubectl"), "--kubeconfig", self.kubeconfig, *args],
            self.env,
            timeout,
            check,
        )

    def kwokctl(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(Path(self.bin_dir) / "kwokctl"), "--name", self.name, *args],
            self.env,
            timeout,
            check,
        )

    def api_client(self) -> Any:
        """A fresh ``kubernetes.client.ApiClient`` authenticated as cluster admin."""
        from kubernetes import config as k8s_config

        return k8s_config.new_client_from_config(config_file=self.kubeconfig)

    def api_client_for_token(self, token: str) -> Any:
        """A ``kubernetes.client.ApiClient`` for this cluster that authenticates with a bearer
        token only (no client certificate), e.g. a ServiceAccount token from TokenRequest."""
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config

        admin = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=self.kubeconfig, client_configuration=admin)
        cfg = k8s_client.Configuration()
        cfg.host = admin.host
        cfg.ssl_ca_cert = admin.ssl_ca_cert
        cfg.verify_ssl = admin.verify_ssl
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return k8s_client.ApiClient(cfg)

    def token_kubeconfig(self, ns: str, sa: str, out: Path, *, seconds: int = 600) -> Path:
        """Write a kubeconfig that authenticates as ServiceAccount ``ns/sa`` with a TokenRequest
        token only (no client certificate), so the apiserver, and its audit log, see that user."""
        import json

        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config

        with self.api_client() as api:
            token = k8s_client.CoreV1Api(api).create_namespaced_service_account_token(
                sa, ns, {"spec": {"expirationSeconds": seconds}}).status.token
        admin = k8s_client.Configuration()
        k8s_config.load_kube_config(config_file=self.kubeconfig, client_configuration=admin)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": admin.host,
                                                   "certificate-authority": admin.ssl_ca_cert}}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": sa, "namespace": ns}}],
            "current-context": "c",
        }
        out.write_text(json.dumps(config))
        return out

    def delete(self) -> None:
        """Delete the cluster; idempotent, never raises (it runs from finalizers and atexit)."""
        with self._lock:
            if self._deleted:
                return
            self._deleted = True
        try:
            _run(
                [str(Path(self.bin_dir) / "kwokctl"), "--name", self.name, "delete", "cluster"],
                self.env,
                timeout=120,
            )
        except Exception as exc:
            print(f"kube_cluster: `kwokctl delete cluster` failed: {exc}", file=sys.stderr)
        _kill_leftovers(Path(self.workdir))
        _registry_file(self.name).unlink(missing_ok=True)


def _registry_file(name: str) -> Path:
    """Each live cluster is recorded here, so that one left behind by a killed pytest (SIGKILL,
    OOM, a closed terminal) is torn down by the next session instead of running forever."""
    root = Path(os.environ.get("CHAOS_TESTBIN_CACHE") or Path.home() / ".cache" / "chaos-testbin")
    return root / "running" / f"{name}.json"


def _register(cluster: KubeCluster) -> None:
    path = _registry_file(cluster.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "owner_pid": os.getpid(),
        "name": cluster.name,
        "workdir": cluster.workdir,
        "bin_dir": cluster.bin_dir,
    }
    path.write_text(json.dumps(record))


def _reap_orphans() -> None:
    """Delete clusters whose owning test process is gone."""
    for path in _registry_file("x").parent.glob("*.json"):
        try:
            record = json.loads(path.read_text())
            owner = int(record["owner_pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        try:
            os.kill(owner, 0)
            continue  # owner alive: not ours to touch
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        print(
            f"kube_cluster: removing orphaned cluster {record['name']} "
            f"(its pytest, pid {owner}, is gone)",
            file=sys.stderr,
        )
        workdir = Path(record["workdir"])
        bin_dir = Path(record["bin_dir"])
        orphan = KubeCluster(
            name=record["name"],
            bin_dir=str(bin_dir),
            workdir=str(workdir),
            kubeconfig=str(workdir / "clusters" / record["name"] / "kubeconfig.yaml"),
            env=_cluster_env(bin_dir, workdir, workdir.parent / "kubeconfig-merged.yaml"),
        )
        if (bin_dir / "kwokctl").exists() and workdir.exists():
            orphan.delete()
        else:
            _kill_leftovers(workdir)
        path.unlink(missing_ok=True)


def _leftover_pids(workdir: Path) -> dict[int, bytes]:
    """Processes still running from this cluster's workdir. The components are started with the
    workdir in their command line (data dir, kubeconfig, pki) and each test cluster has a unique
    workdir, so nothing else can match."""
    needle = (str(workdir).rstrip("/") + "/clusters/").encode()
    found: dict[int, bytes] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if needle in cmdline:
            found[int(proc.name)] = cmdline
    return found


def _kill_leftovers(workdir: Path, grace: float = 15.0) -> None:
    """Wait up to ``grace`` seconds for the components to exit (``kwokctl delete`` signals them
    but does not wait), then SIGKILL whatever is left."""
    deadline = time.monotonic() + grace
    while (left := _leftover_pids(workdir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, cmdline in left.items():
        try:
            os.kill(pid, signal.SIGKILL)
            print(f"kube_cluster: killed leftover pid {pid}: {cmdline[:120]!r}", file=sys.stderr)
        except OSError:
            pass


def _create_args(
    name: str, bin_dir: Path, kubeconfig_out: Path, config: Path | None = None
) -> list[str]:
    b = bin_dir
    return [
        str(b / "kwokctl"),
        "--name",
        name,
        "create",
        "cluster",
        # tests/cluster/realnode.py: kwok manages only its fake nodes, the API server's
        # certificate names the `kubernetes` Service IP and it has a client certificate for
        # kubelets, so that a real node can join (the ``real_node`` fixture).
        *(["--config", str(config)] if config is not None else []),
        "--runtime",
        "binary",
        "--kube-authorization",  # apiserver: --authorization-mode=Node,RBAC
        "--etcd-binary",
        str(b / "etcd"),
        "--kube-apiserver-binary",
        str(b / "kube-apiserver"),
        "--kube-controller-manager-binary",
        str(b / "kube-controller-manager"),
        "--kube-scheduler-binary",
        str(b / "kube-scheduler"),
        "--kwok-controller-binary",
        str(b / "kwok"),
        # kwok serves the pod log API (kubectl logs) for its fake nodes from files named by
        # Logs/ClusterLogs objects (kwok.x-k8s.io/v1alpha1); these make them API resources that
        # tests create on the fly (tests/k8s/kubelet_sim.py). See docs/test-cluster.md.
        "--enable-crds",
        "Logs,ClusterLogs",
        # kwokctl writes/merges a context into this file; never the user's ~/.kube/config.
        "--kubeconfig",
        str(kubeconfig_out),
        "--wait",
        f"{int(CREATE_TIMEOUT_S)}s",
        "--timeout",
        f"{int(CREATE_TIMEOUT_S)}s",
    ]


def _cluster_env(bin_dir: Path, workdir: Path, kubeconfig_out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["KWOK_WORKDIR"] = str(workdir)
    env["KWOK_KUBE_VERSION"] = KUBE_VERSION
    env["KWOK_ETCD_VERSION"] = ETCD_VERSION
    env["KWOK_KUBECTL_BINARY"] = str(bin_dir / "kubectl")
    env["KUBECONFIG"] = str(kubeconfig_out)
    # Proxies would break the loopback connections between the components.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(var, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _check_no_downloads(dry_run_output: str) -> None:
    """kwokctl fetches whatever it is not given from GitHub and dl.k8s.io; this suite must run
    offline with the binaries built from source, so refuse if the plan names any URL."""
    plan = [ln for ln in dry_run_output.splitlines() if ln.startswith("# Download")]
    remote = [ln for ln in plan if "://" in ln]
    if remote or not plan:
        raise RuntimeError(
            "kwokctl create cluster --dry-run plans to download:\n  "
            + "\n  ".join(remote or ["(no '# Download' lines: kwokctl's output format changed?)"])
            + "\npass every component as a local --*-binary path (see _create_args)"
        )


@contextlib.contextmanager
def _creation_lock() -> Iterator[None]:
    path = Path(os.environ.get("CHAOS_TESTBIN_CACHE", Path.home() / ".cache" / "chaos-testbin"))
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "create-cluster.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start_cluster(bin_dir: Path, base_dir: Path, name: str | None = None) -> KubeCluster:
    """Create a kwok cluster with fake nodes; the caller must call ``.delete()``."""
    name = name or f"chaos-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workdir = base_dir / "kwok"
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig_out = base_dir / "kubeconfig-merged.yaml"
    env = _cluster_env(bin_dir, workdir, kubeconfig_out)
    kubeconfig = workdir / "clusters" / name / "kubeconfig.yaml"
    cluster = KubeCluster(
        name=name, bin_dir=str(bin_dir), workdir=str(workdir), kubeconfig=str(kubeconfig), env=env
    )
    kwok_config = base_dir / "kwokctl-config.yaml"
    kwok_config.write_text(realnode.kwokctl_config(name, workdir))
    create = _create_args(name, bin_dir, kubeconfig_out, kwok_config)
    _check_no_downloads(_run([*create, "--dry-run"], env, timeout=60).stdout)
    _reap_orphans()
    _register(cluster)
    atexit.register(cluster.delete)
    t0 = time.monotonic()
    try:
        # kwokctl picks "unused" ports by probing and binds them later, so two clusters
        # created at the same moment (two test sessions on one machine) get the same ports and
        # one never becomes Ready. Creation is serialised across processes; running is not.
        with _creation_lock():
            _run(create, env, timeout=CREATE_TIMEOUT_S + 60)
        cluster.kwokctl("scale", "node", "--replicas", str(FAKE_NODES), timeout=60)
        cluster.kubectl(
            "wait", "--for=condition=Ready", "node", "--all", "--timeout=90s", timeout=120
        )
        # Namespaced objects need their ServiceAccount; the controller-manager creates it.
        wait_for(
            "ServiceAccount default/default",
            lambda: (
                cluster.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            timeout=60,
        )
    except BaseException:
        _dump_logs(cluster)
        cluster.delete()
        raise
    cluster.create_seconds = time.monotonic() - t0
    return cluster


def _dump_logs(cluster: KubeCluster) -> None:
    logs = sorted(Path(cluster.workdir).glob(f"clusters/{cluster.name}/logs/*.log"))
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()[-25:]
        print(f"--- {log} (last {len(lines)} lines) ---", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)


def _sigterm_to_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def kube_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    result = _get_bin_result(request.config)
    if result.bin_dir is None:
        if result.action == "skip":
            pytest.skip(result.message)
        pytest.fail(result.message, pytrace=False)
    assert result.bin_dir is not None
    # SIGTERM (CI cancelling a job, `timeout`) would otherwise end pytest without running
    # finalizers or atexit; turn it into KeyboardInterrupt so the cluster is torn down.
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_keyboard_interrupt)
        request.addfinalizer(lambda: signal.signal(signal.SIGTERM, previous))
    cluster = start_cluster(result.bin_dir, tmp_path_factory.mktemp("kube-cluster"))
    request.addfinalizer(cluster.delete)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"kube_cluster: {cluster.name} up in {cluster.create_seconds:.1f}s "
            f"(kubeconfig {cluster.kubeconfig})"
        )
    try:
        yield cluster
    finally:
        cluster.delete()


@pytest.fixture
def k8s_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace whose ``default`` ServiceAccount exists; deleted afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with kube_cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            wait_for(
                f"ServiceAccount {name}/default",
                lambda: core.read_namespaced_service_account("default", name),
                timeout=60,
            )
            yield name
        finally:
            try:
                core.delete_namespace(name)
            except Exception as exc:
                print(f"k8s_namespace: deleting {name} failed: {exc}", file=sys.stderr)


@pytest.fixture
def kubelet_sim(kube_cluster: KubeCluster, k8s_namespace: str) -> Iterator[Any]:
    """A ``kubelet_sim.KubeletSim`` for ``k8s_namespace``, started: it acts as the kubelet for
    the ephemeral containers of that namespace's pods (default policy ``Exec()``: run them for
    real, in per-pod namespaces; add rules with ``.policy(prefix_or_callable, policy)``). On
    teardown it kills everything it started and removes its network namespaces and files."""
    from kubelet_sim import KubeletSim

    sim = KubeletSim(kube_cluster.kubeconfig, k8s_namespace).start()
    try:
        yield sim
    finally:
        sim.close()


# --------------------------------------------------------------------------------------------
# The real node: containerd + runc + bridge CNI + kubelet + kube-proxy (tests/cluster/realnode.py)
# --------------------------------------------------------------------------------------------

NODE_BUILD_SH = REPO_ROOT / "tests" / "cluster" / "build-node.sh"
IMAGES_BUILD_SH = REPO_ROOT / "tests" / "cluster" / "build-images.sh"
#: The images the tests run, as imported into the node's containerd (build-images.sh).
IMAGES = realnode.IMAGES
#: What a pod needs to land on the real node (and only there).
REAL_NODE_SCHEDULING = realnode.REAL_NODE_SCHEDULING


def _script_output(env_var: str, script: Path, log_dir: Path, timeout: float) -> Path:
    """A directory given by ``$env_var``, else the last stdout line of ``script`` (a build
    that is a no-op once cached)."""
    given = os.environ.get(env_var)
    if given:
        return Path(given).expanduser().resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{script.stem}.log"
    with open(log_path, "w") as log:
        proc = subprocess.run(
            ["bash", str(script)], stdout=subprocess.PIPE, stderr=log, text=True,
            timeout=timeout, cwd=REPO_ROOT, check=False,
        )
    out = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not out:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(
            f"{script.relative_to(REPO_ROOT)} failed (exit {proc.returncode}); log {log_path}:\n{tail}"
        )
    return Path(out[-1])


@dataclass
class RealNodeSession:
    """The session's real node, with what the host looked like before it started."""

    cluster: KubeCluster
    node: realnode.RealNode
    before: realnode.HostState
    base_dir: Path
    node_bin: Path
    images: Path
    starts: list[dict[str, float]] = field(default_factory=list)

    def start(self) -> realnode.RealNode:
        self.node = realnode.start(
            kwok_workdir=Path(self.cluster.workdir), cluster_name=self.cluster.name,
            node_bin=self.node_bin, control_bin=Path(self.cluster.bin_dir), images_dir=self.images,
            base_dir=self.base_dir, log=lambda m: print(m, file=sys.stderr),
        )
        self.starts.append(dict(self.node.timings))
        return self.node

    def stop_and_check(self) -> list[str]:
        """Stop the node; what it left on the host compared with before it first started."""
        problems = self.node.stop(lambda m: print(m, file=sys.stderr))
        return problems + self.before.differences(realnode.host_state())


@pytest.fixture(scope="session")
def real_node_session(
    kube_cluster: KubeCluster, request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RealNodeSession]:
    missing = realnode.missing_requirements()
    if missing:
        msg = "the real test node cannot start here: " + "; ".join(missing)
        if _in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    log_dir = tmp_path_factory.mktemp("real-node-builds")
    try:
        node_bin = _script_output("CHAOS_NODEBIN", NODE_BUILD_SH, log_dir, BUILD_TIMEOUT_S)
        images = _script_output("CHAOS_IMAGES", IMAGES_BUILD_SH, log_dir, BUILD_TIMEOUT_S)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        if _in_ci() or shutil.which("go"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(f"{exc}\n(the real node needs Go to build the kubelet; see docs/test-cluster.md)")
    session = RealNodeSession(
        cluster=kube_cluster, node=None,  # type: ignore[arg-type]
        before=None,  # type: ignore[arg-type]
        base_dir=tmp_path_factory.mktemp("real-node"), node_bin=node_bin,
        images=images,
    )
    session.start()
    assert session.node.host_before is not None
    session.before = session.node.host_before
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"real_node: {session.node.name} Ready in {session.node.timings['start_total']:.1f}s"
        )
    try:
        yield session
    finally:
        problems = session.stop_and_check()
        if problems:
            pytest.fail("the real node left things behind on the host:\n  " + "\n  ".join(problems),
                        pytrace=False)


@pytest.fixture
def real_node(real_node_session: RealNodeSession) -> realnode.RealNode:
    """The real node (``realnode.RealNode``): pods reach it with ``REAL_NODE_SCHEDULING``."""
    return real_node_session.node
