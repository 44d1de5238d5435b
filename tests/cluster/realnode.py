"""A real Kubernetes node next to kwok's fake ones: containerd + runc + bridge CNI + kubelet +
kube-proxy, started on this machine and torn down without a trace.

Used by the ``real_node`` fixture (tests/k8s/conftest.py) and by ``tests/cluster/cluster.sh
up --real-node``. Standard library only, so ``python3 tests/cluster/realnode.py`` works outside
the project's virtualenv. See docs/test-cluster.md ("The real node") for what it touches on the
host and how each part is undone.

Components and where they come from:
  kubelet, kube-proxy   tests/cluster/build-node.sh (same k8s.io/kubernetes as the control plane)
  containerd, ctr, runc Debian's containerd and runc packages
  bridge, host-local,   Debian's containernetworking-plugins (/usr/lib/cni)
  loopback, portmap
  nft                   Debian's nftables (kube-proxy runs in nftables mode: its own table)
  images                tests/cluster/build-images.sh (OCI archives imported with ctr)

One real node per machine at a time: the kubelet's port (10250), kube-proxy's nftables tables
and the bridge are host-wide, so a flock on <cache>/real-node.lock serialises sessions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# The node is named by its IP: the API server reaches kubelets (logs, exec) at their Hostname
# address first, which for kwok's fake nodes is "localhost" (kwok serves their logs there) and
# for this node would be its name, which no resolver knows. An IP literal needs none.
# Pods land on the real node only when they ask: every test that needs a container tolerates
# this taint and selects the node by its label. kwok's fake nodes keep everything else.
TAINT_KEY = "chaos.test/real-node"
NODE_LABEL = "chaos.test/real-node"
BRIDGE = "chaos-node0"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service: the API server certificate names it
CNI_NETWORK = "chaos-node"
CGROUP_ROOT = "/chaos-node"
KUBELET_PORT = 10250
# What the kubelet insists on for these sysctls (container_manager_linux.go). It would write
# them host-wide (kernel.panic_on_oops=1 on a shared CI machine!); instead it runs in its own
# mount namespace where these files are bind-mounted copies already holding the values, with
# protectKernelDefaults: true so it checks and never writes.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Host-wide settings something on the node may change; recorded at start, restored at stop.
# The bridge plugin sets ip_forward=1 (isGateway); kube-proxy is told to leave conntrack alone.
WATCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    *KUBELET_SYSCTLS,
)
#: What a pod needs to land on the real node (and only there).
REAL_NODE_SCHEDULING: dict[str, object] = {
    "nodeSelector": {NODE_LABEL: "true"},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}
DEBIAN_PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "nftables": "/usr/sbin/nft",
    "util-linux": "/usr/bin/unshare",
    "openssl": "/usr/bin/openssl",
}
IMAGES = {
    "pause": "chaos.test/pause:3.10",
    "helper": "chaos.test/helper:dev",
    "runner": "chaos.test/runner:dev",
    "demo-app": "chaos.test/demo-app:dev",
}


def cache_root() -> Path:
    return Path(
        os.environ.get("CHAOS_TESTBIN_CACHE") or Path.home() / ".cache" / "chaos-testbin"
    )


def node_ip() -> str:
    """The address pods reach this host at (and the API server's `kubernetes` endpoint): the
    source address of the default route, as the API server itself picks its advertise address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            addr = str(s.getsockname()[0])
        except OSError:
            addr = ""
    if not addr or addr.startswith("127."):
        raise NodeError(
            "this machine has no default route, so the API server has no address that pods "
            "can reach; the real node needs one (any non-loopback interface with a default route)"
        )
    return addr


class NodeError(RuntimeError):
    pass


def missing_requirements() -> list[str]:
    """What this machine lacks for a real node, each with what to do; empty when ready."""
    out = [
        f"{path} (install the Debian package {pkg}: tests/cluster/setup-node.sh)"
        for pkg, path in DEBIAN_PACKAGES.items()
        if not os.access(path, os.X_OK)
    ]
    if os.geteuid() != 0:
        out.append("root (the kubelet, containerd and the CNI plugins need it)")
    fs = Path("/proc/filesystems").read_text() if Path("/proc/filesystems").exists() else ""
    if "overlay" not in fs:
        out.append("the overlay filesystem (modprobe overlay)")
    for sub in ("cpu", "cpuacct", "cpuset", "memory", "pids"):
        if not (Path("/sys/fs/cgroup") / sub).is_dir() and not Path(
            "/sys/fs/cgroup/cgroup.controllers"
        ).exists():
            out.append(f"the cgroup v1 controller {sub} mounted at /sys/fs/cgroup/{sub}")
    return out


def kwokctl_config(cluster_name: str, kwok_workdir: Path) -> str:
    """The KwokctlConfiguration every test cluster is created with, so that a real node can join
    it: kwok manages only its own (annotated) fake nodes; the API server's certificate names the
    `kubernetes` Service IP; it presents a client certificate to kubelets (logs, exec)."""
    pki = kwok_workdir / "clusters" / cluster_name / "pki"
    doc = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {"kubeApiserverCertSANs": [SERVICE_IP]},
        "componentsPatches": [
            {
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false", "override": True},
                    {
                        "key": "manage-nodes-with-annotation-selector",
                        "value": "kwok.x-k8s.io/node=fake",
                    },
                ],
            },
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                    {"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
                    {"key": "kubelet-client-key", "value": str(pki / "admin.key")},
                ],
            },
        ],
    }
    return json.dumps(doc, indent=1) + "\n"  # JSON is YAML


@dataclass
class HostState:
    """What the node may leave behind on the host, to compare before and after."""

    mounts: list[str]
    links: list[str]
    nft_tables: list[str]
    iptables: list[str]
    cgroups: list[str]
    sysctls: dict[str, str]
    processes: list[str]
    fixed_paths: list[str]
    run_containerd: list[str]

    def differences(self, later: HostState) -> list[str]:
        out = []
        for name in self.__dataclass_fields__:
            a, b = getattr(self, name), getattr(later, name)
            if a == b:
                continue
            if isinstance(a, dict):
                out += [f"{name}: {k} was {a.get(k)!r}, now {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            else:
                added = sorted(set(b) - set(a))
                removed = sorted(set(a) - set(b))
                if added:
                    out.append(f"{name}: left behind {added[:10]}")
                if removed:
                    out.append(f"{name}: gone since before {removed[:10]}")
        return out


def _read_sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return "<absent>"


def _lines(argv: list[str]) -> list[str]:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def _node_processes() -> list[str]:
    names = {"kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "pause"}
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            comm = (p / "comm").read_text().strip()
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z":  # exited, waiting for init to reap it: holds nothing
            continue
        if comm in names or comm.startswith("containerd-shim"):
            out.append(comm)
    return sorted(out)


#: What of the host's mounts, links and nftables tables a node could leave: the rest belongs to
#: other programs (a concurrent image build's chroot mounts, say) and is not compared.
NODE_TRACES = ("containerd", "kubelet", "netns", "chaos-node", "/pods/", "cni", "kube", "veth")


def _ours(line: str) -> bool:
    return any(t in line for t in NODE_TRACES)


def host_state() -> HostState:
    mounts = [
        f"{ln.split()[4]} {ln.split(' - ')[1].split()[0]}"
        for ln in Path("/proc/self/mountinfo").read_text().splitlines()
        if _ours(ln)
    ]
    links = [ln.split()[0] for ln in _lines(["ip", "-br", "link"]) if _ours(ln) or BRIDGE in ln]
    tables = [t for t in _lines(["nft", "list", "tables"]) if _ours(t)]
    ipt = []
    for tool in ("iptables-save", "ip6tables-save"):
        ipt += [ln for ln in _lines([tool]) if "KUBE" in ln or "CNI" in ln]
    cgroups = []
    for sub in Path("/sys/fs/cgroup").iterdir():
        for d in (sub / CGROUP_ROOT.strip("/"), sub / "kubepods", sub / "kubepods.slice"):
            if d.is_dir():
                cgroups.append(str(d))
    cni = []
    for d in (Path("/var/lib/cni"), Path("/etc/cni/net.d"), Path("/run/netns"), Path("/var/run/netns"),
              Path("/var/log/pods"), Path("/var/log/containers"), Path("/var/lib/kubelet")):
        if d.is_dir():
            cni += [str(p) for p in d.rglob("*")]
    runc = [str(p) for p in Path("/run/containerd").rglob("*")] if Path("/run/containerd").is_dir() else []
    return HostState(
        mounts=sorted(mounts),
        links=sorted(links),
        nft_tables=sorted(tables),
        iptables=sorted(ipt),
        cgroups=sorted(cgroups),
        sysctls={k: _read_sysctl(k) for k in WATCHED_SYSCTLS},
        processes=_node_processes(),
        fixed_paths=sorted(cni),
        run_containerd=sorted(runc),
    )


@dataclass
class RealNode:
    name: str
    dir: Path
    node_ip: str
    kubeconfig: Path  # the cluster's admin kubeconfig
    kubectl: Path
    containerd_sock: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    sysctls_before: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    lock_fd: int | None = None
    stopped: bool = False
    # Host folders containerd and the CNI library create at fixed places (shim sockets in
    # /run/containerd/s, the CNI result cache in /var/lib/cni): removed at stop when they did
    # not exist before and hold nothing but empty folders.
    host_dirs_created: list[Path] = field(default_factory=list)
    #: The host as it was once this node held the machine's real-node lock, before it started.
    host_before: HostState | None = None

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def ctr(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.containerd_sock), "--namespace", "k8s.io", *args],
            capture_output=True, text=True, timeout=timeout, check=check,
        )

    def container_ids(self) -> set[str]:
        """Ids of every container and sandbox containerd knows (its task and CRI state)."""
        ids: set[str] = set()
        for sub in ("state/io.containerd.runtime.v2.task/k8s.io",
                    "root/io.containerd.grpc.v1.cri/sandboxes",
                    "root/io.containerd.grpc.v1.cri/containers"):
            top = self.dir / "containerd" / sub
            if top.is_dir():
                ids.update(p.name for p in top.iterdir())
        with contextlib.suppress(OSError, subprocess.TimeoutExpired, subprocess.CalledProcessError):
            ids.update(self.ctr("containers", "ls", "-q", timeout=10).stdout.split())
        return ids

    def cgroup_dir(self, controller: str) -> Path:
        return Path("/sys/fs/cgroup") / controller / CGROUP_ROOT.strip("/")

    def kubectl_run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def delete_node_object(self) -> None:
        """So that the next start waits for a fresh registration, not a stale Ready."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.kubectl_run("delete", "node", self.name, "--ignore-not-found", "--wait=false", timeout=15)

    def stop(self, log: Callable[[str], None] = lambda m: None) -> list[str]:
        """Tear the node down; returns problems found on the way (empty when clean)."""
        if self.stopped:
            return []
        self.stopped = True
        problems: list[str] = []
        t0 = time.monotonic()
        self.delete_node_object()
        for name in ("kube-proxy", "kubelet"):
            _terminate(self.procs.get(name), 10)
        self.timings["stop_kubelet"] = time.monotonic() - t0
        ids = self.container_ids()
        # Every container and sandbox process lives under our cgroup root: kill them all.
        _kill_cgroup_tree(self.cgroup_dir("pids") if self.cgroup_dir("pids").is_dir() else self.cgroup_dir("memory"))
        # Shims outlive their containers until containerd deletes the tasks; kill ours.
        for pid, _ in procs_with_arg(str(self.containerd_sock)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.timings["stop_containers"] = time.monotonic() - t0
        _terminate(self.procs.get("containerd"), 10)
        self.timings["stop_containerd"] = time.monotonic() - t0
        deadline = time.monotonic() + 15
        while (left := list(procs_with_arg(str(self.containerd_sock)))) and time.monotonic() < deadline:
            for pid, _ in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for pid, argv in left:
            problems.append(f"process {pid} still running: {argv[:100]}")
        # Mounts: overlay rootfs, shm, netns files, kubelet volumes (all under our dir).
        problems += _unmount_under(self.dir)
        self.timings["stop_unmount"] = time.monotonic() - t0
        # cgroups, deepest first.
        for sub in Path("/sys/fs/cgroup").iterdir():
            top = sub / CGROUP_ROOT.strip("/")
            if top.is_dir():
                problems += _rmdir_cgroup_tree(top)
        # Network: veths go with their netns; the bridge is ours; kube-proxy's tables are ours.
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        for fam in ("ip", "ip6"):
            subprocess.run(["nft", "delete", "table", fam, "kube-proxy"], capture_output=True, check=False)
        for d in (Path("/var/lib/cni/results"),):
            if d.is_dir():
                for f in d.glob(f"{CNI_NETWORK}-*"):
                    f.unlink(missing_ok=True)
        for k, v in self.sysctls_before.items():
            if v != "<absent>" and _read_sysctl(k) != v:
                try:
                    Path("/proc/sys", k).write_text(v + "\n")
                    log(f"restored sysctl {k.replace('/', '.')}={v}")
                except OSError as e:
                    problems.append(f"could not restore sysctl {k}={v}: {e}")
        # What the shims and the CNI library left at fixed host paths, by our container ids:
        # shim sockets are /run/containerd/s/sha256(<address>/<namespace>/<id>).
        for cid in ids:
            digest = hashlib.sha256(f"{self.containerd_sock}/k8s.io/{cid}".encode()).hexdigest()
            Path("/run/containerd/s", digest).unlink(missing_ok=True)
            for f in Path("/var/lib/cni/results").glob(f"*-{cid}-*"):
                f.unlink(missing_ok=True)
        for top in self.host_dirs_created:
            problems += _remove_empty_tree(top)
        if not problems:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        self.timings["stop"] = time.monotonic() - t0
        return problems


FIXED_HOST_DIRS = (Path("/run/containerd"), Path("/var/lib/cni"))
#: Paths the kubelet uses whatever its --root-dir says (Go constants). In the kubelet's own
#: mount namespace our folders are mounted over them, so nothing lands on the host; on the
#: host they are only (empty) mount points, created here when missing and removed at stop.
KUBELET_FIXED = {
    Path("/var/log/containers"): "container-log-links",  # symlinks to each container's log
    Path("/var/lib/kubelet/device-plugins"): "device-plugins",  # the device manager's socket
}


def _topmost_missing(path: Path) -> Path | None:
    top = None
    for p in [path, *path.parents]:
        if p.exists():
            break
        top = p
    return top


def _remove_empty_tree(top: Path) -> list[str]:
    if not top.is_dir():
        return []
    dirs = sorted((p for p in top.rglob("*")), key=lambda p: len(p.parts), reverse=True)
    files = [p for p in dirs if not p.is_dir()]
    if files:
        return [f"{top} holds files the node left: {[str(f) for f in files[:5]]}"]
    for p in [*dirs, top]:
        with contextlib.suppress(OSError):
            p.rmdir()
    return [] if not top.exists() else [f"could not remove {top}"]


def _terminate(p: subprocess.Popen[bytes] | None, grace: float) -> None:
    if p is None or p.poll() is not None:
        return
    with contextlib.suppress(OSError):
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


def procs_with_arg(needle: str) -> Iterator[tuple[int, str]]:
    me = os.getpid()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            argv = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in argv:
            yield int(p.name), argv


def _cgroup_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    if not top.is_dir():
        return pids
    for f in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in f.read_text().split())
    return pids


def _kill_cgroup_tree(top: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = _cgroup_pids(top)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _rmdir_cgroup_tree(top: Path) -> list[str]:
    problems = []
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*dirs, top]:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            problems.append(f"cgroup {d} could not be removed")
    return problems


def mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    out = []
    for ln in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = ln.split()[4].replace("\\040", " ")
        if mp == str(root) or mp.startswith(prefix):
            out.append(mp)
    return out


def _unmount_under(root: Path) -> list[str]:
    for _ in range(5):
        mps = mounts_under(root)
        if not mps:
            return []
        for mp in sorted(mps, key=lambda m: m.count("/"), reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, check=False)
    return [f"mount left at {m}" for m in mounts_under(root)]


def _run(argv: list[str], *, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        raise NodeError(f"{' '.join(argv[:4])} ... failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
    return r  # type: ignore[no-any-return]


def _cert(pki: Path, ca: Path, ca_key: Path, name: str, cn: str, org: str | None) -> None:
    subj = f"/O={org}/CN={cn}" if org else f"/CN={cn}"
    _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes", "-keyout", str(pki / f"{name}.key"), "-subj", subj, "-out", str(pki / f"{name}.csr")])
    _run(["openssl", "x509", "-req", "-in", str(pki / f"{name}.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
          "-CAcreateserial", "-CAserial", str(pki / "ca.srl"), "-days", "7", "-out", str(pki / f"{name}.crt")])
    os.chmod(pki / f"{name}.key", 0o600)


def _kubeconfig(path: Path, server: str, ca: Path, crt: Path, key: Path, user: str) -> None:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "node",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
        "contexts": [{"name": "node", "context": {"cluster": "c", "user": user}}],
    }
    path.write_text(json.dumps(doc, indent=1))
    os.chmod(path, 0o600)


def _server_of(kubeconfig: Path) -> tuple[str, Path]:
    text = kubeconfig.read_text()
    server = ca = ""
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith("server:"):
            server = s.split(":", 1)[1].strip()
        elif s.startswith("certificate-authority:"):
            ca = s.split(":", 1)[1].strip()
    if not server or not ca:
        raise NodeError(f"cannot read the API server and CA from {kubeconfig}")
    return server, Path(ca)


@contextlib.contextmanager
def _timer(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    timings[name] = time.monotonic() - t0


def _wait(what: str, check: Callable[[], bool], timeout: float, proc_logs: dict[str, tuple[subprocess.Popen[bytes], Path]] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, (p, log) in (proc_logs or {}).items():
            if p.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-30:]
                raise NodeError(f"{name} exited ({p.returncode}) while waiting for {what}:\n" + "\n".join(tail))
        time.sleep(0.2)
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    fh = open(log, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    finally:
        fh.close()


def acquire_lock(timeout: float, log: Callable[[str], None]) -> int:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "real-node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise NodeError(
                    f"another real test node is running on this machine (lock {root}/real-node.lock); "
                    "only one fits (port 10250, kube-proxy's nftables tables, the bridge)"
                ) from None
            if not said:
                log("another real node is running on this machine; waiting for it to stop")
                said = True
            time.sleep(1)


def start(
    *,
    kwok_workdir: Path,
    cluster_name: str,
    node_bin: Path,
    control_bin: Path,
    images_dir: Path | None,
    base_dir: Path,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
    lock_timeout: float = 900,
) -> RealNode:
    """Join a real node to the kwok cluster ``cluster_name``; the caller must ``stop()`` it."""
    missing = missing_requirements()
    if missing:
        raise NodeError("the real node needs: " + "; ".join(missing))
    for b in ("kubelet", "kube-proxy"):
        if not os.access(node_bin / b, os.X_OK):
            raise NodeError(f"{node_bin / b} is missing; run tests/cluster/build-node.sh")
    cluster_dir = kwok_workdir / "clusters" / cluster_name
    admin_kubeconfig = cluster_dir / "kubeconfig.yaml"
    server, ca = _server_of(admin_kubeconfig)
    ip = node_ip()
    lock_fd = acquire_lock(lock_timeout, log)
    before = host_state()
    d = base_dir / "node"
    if d.exists():
        _unmount_under(d)
        shutil.rmtree(d)
    for sub in ("pki", "containerd/root", "containerd/state", "cni/net.d", "cni/ipam", "kubelet",
                "logs", "sysctl", "kube-proxy"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    node = RealNode(name=ip, dir=d, node_ip=ip, kubeconfig=admin_kubeconfig,
                    kubectl=control_bin / "kubectl", containerd_sock=d / "containerd" / "c.sock",
                    lock_fd=lock_fd, host_before=before)
    node.sysctls_before = {k: _read_sysctl(k) for k in WATCHED_SYSCTLS}
    node.host_dirs_created = [p for p in FIXED_HOST_DIRS if not p.exists()]
    for fixed in KUBELET_FIXED:
        top = _topmost_missing(fixed)
        if top is not None:
            node.host_dirs_created.append(top)
            fixed.mkdir(parents=True)
    try:
        _start(node, server=server, ca=ca, ca_key=cluster_dir / "pki" / "ca.key",
               node_bin=node_bin, images_dir=images_dir, log=log)
    except BaseException:
        problems = node.stop(log)
        if problems:
            log("real node teardown after a failed start: " + "; ".join(problems))
        raise
    return node


def _start(node: RealNode, *, server: str, ca: Path, ca_key: Path, node_bin: Path,
           images_dir: Path | None, log: Callable[[str], None]) -> None:
    d = node.dir
    t_all = time.monotonic()
    pki = d / "pki"
    with _timer(node.timings, "certificates"):
        _cert(pki, ca, ca_key, "kubelet", f"system:node:{node.name}", "system:nodes")
        _cert(pki, ca, ca_key, "kube-proxy", "system:kube-proxy", None)
        _kubeconfig(d / "kubelet.kubeconfig", server, ca, pki / "kubelet.crt", pki / "kubelet.key", "kubelet")
        _kubeconfig(d / "kube-proxy.kubeconfig", server, ca, pki / "kube-proxy.crt", pki / "kube-proxy.key", "kube-proxy")

    # containerd: its own root, state and socket; CRI with runc (cgroupfs), overlayfs, our CNI
    # config dir, netns files under its state dir, our pause image.
    sock = node.containerd_sock
    cfg = f"""version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGES['pause']}"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # Never ask for an oom_score_adj below containerd's own (0): lowering it needs
  # CAP_SYS_RESOURCE, which sandboxed CI machines (this one among them) do not grant, and
  # runc then fails every sandbox with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{os.environ.get('CHAOS_NODE_RUNC', '/usr/sbin/runc')}"
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1
"""
    (d / "containerd" / "config.toml").write_text(cfg)
    cni = {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "hairpinMode": True,
                "ipam": {"type": "host-local", "dataDir": str(d / "cni" / "ipam"),
                         "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
        ],
    }
    (d / "cni" / "net.d" / "10-chaos-node.conflist").write_text(json.dumps(cni, indent=1))
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(d)}
    with _timer(node.timings, "containerd"):
        node.procs["containerd"] = _spawn(
            ["containerd", "--config", str(d / "containerd" / "config.toml")], d / "logs" / "containerd.log", env)
        _wait("containerd's socket", lambda: node.ctr("version", check=False, timeout=10).returncode == 0, 30,
              {"containerd": (node.procs["containerd"], d / "logs" / "containerd.log")})
    if images_dir is not None:
        with _timer(node.timings, "images"):
            # In parallel: each import is mostly decompressing and unpacking one image.
            archives = sorted(images_dir.glob("*.tar"))
            with ThreadPoolExecutor(max_workers=len(archives) or 1) as pool:
                results = list(pool.map(
                    lambda a: (a, node.ctr("images", "import", str(a), check=False, timeout=300)),
                    archives))
            for archive, r in results:
                if r.returncode != 0:
                    raise NodeError(f"ctr images import {archive.name} failed: {r.stderr.strip()[-500:]}")
            have = node.ctr("images", "ls", "-q").stdout.split()
            if IMAGES["pause"] not in have:
                raise NodeError(f"{IMAGES['pause']} is not among the imported images ({have}); "
                                f"is {images_dir} the output of tests/cluster/build-images.sh?")

    # The kubelet: cgroupfs under its own cgroup root, its own root dir (shared mount so its
    # volume mounts reach containerd in the host's mount namespace), the sysctl view above.
    kroot = d / "kubelet"
    # The kubelet wants its cgroup root to exist in every v1 hierarchy; cpuset needs its cpus
    # and mems filled in before a task can join.
    for sub in sorted(Path("/sys/fs/cgroup").iterdir()):
        if not sub.is_dir() or sub.name == "unified" or not (sub / "cgroup.procs").exists():
            continue
        top = sub / CGROUP_ROOT.strip("/")
        top.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (top / knob).exists() and not (top / knob).read_text().strip():
                (top / knob).write_text((sub / knob).read_text())
    _run(["mount", "--bind", str(kroot), str(kroot)])
    _run(["mount", "--make-rshared", str(kroot)])
    for name, value in KUBELET_SYSCTLS.items():
        (d / "sysctl" / name.replace("/", ".")).write_text(value + "\n")
    kcfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # this host is cgroup v1 (hybrid); the default flips in 1.35
        "cgroupRoot": CGROUP_ROOT,
        "containerRuntimeEndpoint": f"unix://{sock}",
        "address": node.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 0,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(d / "pod-logs"),  # not /var/log/pods
        "protectKernelDefaults": True,
        "oomScoreAdj": 0,  # -999 by default: needs CAP_SYS_RESOURCE (see containerd above)
        "makeIPTablesUtilChains": False,
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "maxPods": 40,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "tlsCertFile": "",
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "volumePluginDir": str(d / "kubelet-plugins"),
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }
    kcfg.pop("tlsCertFile")
    (d / "kubelet-config.json").write_text(json.dumps(kcfg, indent=1))
    binds = " ".join(
        f"mount --bind {d}/sysctl/{n.replace('/', '.')} /proc/sys/{n} &&" for n in KUBELET_SYSCTLS
    )
    for fixed, ours in KUBELET_FIXED.items():
        (d / ours).mkdir()
        binds += f" mount --bind {d / ours} {fixed} &&"
    kubelet_argv = [
        str(node_bin / "kubelet"),
        f"--config={d}/kubelet-config.json",
        f"--kubeconfig={d}/kubelet.kubeconfig",
        f"--root-dir={kroot}",
        f"--cert-dir={d}/pki/kubelet-serving",
        f"--hostname-override={node.name}",
        f"--node-ip={node.node_ip}",
        f"--node-labels={NODE_LABEL}=true",
        "--v=2",
    ]
    wrapper = ["unshare", "--mount", "--propagation", "unchanged", "--", "/bin/sh", "-c",
               f"{binds} exec \"$@\"", "kubelet-sysctl-view", *kubelet_argv]
    node.delete_node_object()
    with _timer(node.timings, "kubelet_ready"):
        node.procs["kubelet"] = _spawn(wrapper, d / "logs" / "kubelet.log", env)
        kp = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "oomScoreAdj": 0,
            "clientConnection": {"kubeconfig": str(d / "kube-proxy.kubeconfig")},
            "hostnameOverride": node.name,
            "clusterCIDR": POD_CIDR,
            "bindAddress": node.node_ip,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{node.node_ip}/32"],
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s", "udpTimeout": "0s", "udpStreamTimeout": "0s"},
        }
        (d / "kube-proxy" / "config.json").write_text(json.dumps(kp, indent=1))
        node.procs["kube-proxy"] = _spawn(
            [str(node_bin / "kube-proxy"), f"--config={d}/kube-proxy/config.json", "--v=2"],
            d / "logs" / "kube-proxy.log", env)
        watch = {n: (p, d / "logs" / f"{n}.log") for n, p in node.procs.items()}

        def ready() -> bool:
            r = node.kubectl_run("get", "node", node.name, "-o",
                                 "jsonpath={.status.conditions[?(@.type=='Ready')].status}", timeout=20)
            return r.stdout.strip() == "True"

        _wait(f"node {node.name} Ready", ready, 180, watch)
    node.timings["start_total"] = time.monotonic() - t_all
    log(f"real node {node.name} Ready at {node.node_ip} in {node.timings['start_total']:.1f}s "
        f"({', '.join(f'{k} {v:.1f}s' for k, v in node.timings.items() if k != 'start_total')})")


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="tests/cluster/realnode.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("kwokctl-config", help="print the KwokctlConfiguration for a cluster")
    c.add_argument("--name", required=True)
    c.add_argument("--workdir", required=True, type=Path)
    u = sub.add_parser("up", help="join a real node to a kwok cluster and stay in the foreground")
    u.add_argument("--name", required=True)
    u.add_argument("--workdir", required=True, type=Path)
    u.add_argument("--node-bin", required=True, type=Path)
    u.add_argument("--control-bin", required=True, type=Path)
    u.add_argument("--images", type=Path)
    u.add_argument("--base-dir", required=True, type=Path)
    sub.add_parser("check", help="say what this machine lacks for a real node")
    a = ap.parse_args(argv)
    if a.cmd == "kwokctl-config":
        sys.stdout.write(kwokctl_config(a.name, a.workdir))
        return 0
    if a.cmd == "check":
        missing = missing_requirements()
        for m in missing:
            print(f"missing: {m}")
        return 1 if missing else 0
    try:
        node = start(kwok_workdir=a.workdir, cluster_name=a.name, node_bin=a.node_bin,
                     control_bin=a.control_bin, images_dir=a.images, base_dir=a.base_dir)
    except NodeError as exc:
        print(f"tests/cluster/realnode.py: error: {exc}", file=sys.stderr)
        return 1
    stop_now = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_now
        stop_now = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"real node {node.name} is up; stop it with Ctrl-C or SIGTERM to pid {os.getpid()}", file=sys.stderr)
    while not stop_now:
        time.sleep(0.5)
    problems = node.stop(lambda m: print(m, file=sys.stderr))
    assert node.host_before is not None
    problems += node.host_before.differences(host_state())
    for p in problems:
        print(f"left behind: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
