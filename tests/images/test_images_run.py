"""Each test image, imported into a throwaway containerd (the node's containerd 1.6 and runc
1.1, its own root, state and socket under tmp_path, the CRI plugin off) and run once with
``ctr run``: the helper's tools, the runner's ``chaos``, the demo app's HTTP endpoints and its
SIGTERM handling, and pause. Teardown leaves no containerd or shim process, no mount and no
state behind, and checks that it did.

``ctr run IMAGE ID ARGS...`` replaces ENTRYPOINT *and* CMD with ARGS (docker run and a pod's
``args:`` replace only CMD), so the tests put the image's ENTRYPOINT in front themselves.

Containers run with ``--cgroup ''``: runc then makes the container's cgroup a child of the
shim's own cgroup in every v1 hierarchy (and the v2 one of the hybrid layout) and removes it
on delete. ctr's default (``/k8s.io/<id>``) works too, but leaves the ``k8s.io`` parent
behind when it did not exist yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from conftest import IMAGE_NAMES, in_ci, load_recipe_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cluster"))
from realnode import mounts_under, procs_with_arg

pytestmark = pytest.mark.root

oci = load_recipe_module("oci")

NS = "k8s.io"
SHIM_SOCKET_DIR = Path("/run/containerd/s")  # containerd 1.6 puts shim sockets here, always


def _need(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI is set, refusing to skip: {reason}", pytrace=False)
    pytest.skip(reason)


def _pids_with(needle: str) -> list[int]:
    """PIDs whose command line contains needle (our socket path: containerd, shims, ctr)."""
    return [pid for pid, _ in procs_with_arg(needle)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Containerd:
    dir: Path
    address: str
    proc: subprocess.Popen[bytes]
    snapshotter: str
    ids: list[str] = field(default_factory=list)
    entrypoints: dict[str, list[str]] = field(default_factory=dict)

    def ctr(self, *args: str, timeout: float = 120, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["ctr", "--address", self.address, "--namespace", NS, *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} -> exit {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def run_args(self, image: str, cid: str, *, net_host: bool = False,
                 env: dict[str, str] | None = None, mounts: list[str] | None = None,
                 extra: list[str] | None = None) -> list[str]:
        self.ids.append(cid)
        args = ["ctr", "--address", self.address, "--namespace", NS, "run", "--rm",
                "--snapshotter", self.snapshotter, "--cgroup", "",
                "--runc-root", str(self.dir / "runc"), "--fifo-dir", str(self.dir / "fifo")]
        if net_host:
            args.append("--net-host")
        for k, v in (env or {}).items():
            args += ["--env", f"{k}={v}"]
        for m in mounts or []:
            args += ["--mount", m]
        return [*args, *(extra or []), IMAGE_NAMES[image] if "/" not in image else image, cid]

    def run(self, image: str, *args: str, timeout: float = 60, **kw,
            ) -> subprocess.CompletedProcess[str]:
        """Like ``docker run IMAGE ARGS``: ARGS (if any) replace CMD, after the ENTRYPOINT."""
        cid = f"t-{image}-{uuid.uuid4().hex[:8]}"
        argv = [*self.entrypoints.get(image, []), *args] if args else []
        return subprocess.run([*self.run_args(image, cid, **kw), *argv], capture_output=True,
                              text=True, timeout=timeout)

    def task_pid(self, cid: str) -> int | None:
        out = self.ctr("task", "ls", check=False).stdout
        for line in out.splitlines()[1:]:
            w = line.split()
            if w and w[0] == cid and w[2] == "RUNNING":
                return int(w[1])
        return None

    def wait_running(self, cid: str, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.task_pid(cid)
            if pid:
                return pid
            time.sleep(0.1)
        raise AssertionError(f"task {cid} is not running after {timeout}s")

    def shim_sockets(self) -> list[Path]:
        """Where containerd 1.6 puts the shim socket of each of our containers:
        /run/containerd/s/<sha256(<address>/<namespace>/<id>)>."""
        return [SHIM_SOCKET_DIR / hashlib.sha256(f"{self.address}/{NS}/{cid}".encode()).hexdigest()
                for cid in self.ids]


def _uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    if os.geteuid() != 0:
        _need("needs root (containerd, runc, overlay mounts)")
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            _need(f"{tool} is not installed (apt-get install containerd runc)")
    d = tmp_path_factory.mktemp("ctd")
    address = str(d / "c.sock")
    if len(address) > 100:
        pytest.fail(f"socket path too long for a unix socket: {address}; use a shorter --basetemp")
    created_run_dirs = [p for p in (Path("/run/containerd"), SHIM_SOCKET_DIR) if not p.exists()]
    (d / "fifo").mkdir()
    (d / "runc").mkdir()
    (d / "config.toml").write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
""")
    log = open(d / "containerd.log", "wb")  # noqa: SIM115 (closed in the teardown)
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    ctd = Containerd(d, address, proc, "overlayfs")
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail("containerd exited at start:\n" + (d / "containerd.log").read_text()[-3000:])
            if ctd.ctr("version", check=False, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("containerd did not answer in 30s:\n"
                            + (d / "containerd.log").read_text()[-3000:])
            time.sleep(0.2)
        plugins = ctd.ctr("plugins", "ls").stdout
        if not re.search(r"io\.containerd\.snapshotter\.v1\s+overlayfs\s+\S+\s+ok", plugins):
            ctd.snapshotter = "native"  # e.g. tmp_path on overlayfs or tmpfs
        yield ctd
    finally:
        _teardown(ctd, log, created_run_dirs)


def _teardown(ctd: Containerd, log, created_run_dirs: list[Path]) -> None:
    problems = []
    if ctd.proc.poll() is None:
        left = ctd.ctr("container", "ls", "-q", check=False, timeout=10).stdout.split()
        for cid in left:  # what a failed test left behind
            problems.append(f"container left: {cid}")
            ctd.ctr("task", "kill", "-s", "SIGKILL", cid, check=False, timeout=10)
            ctd.ctr("task", "delete", "-f", cid, check=False, timeout=10)
            ctd.ctr("container", "delete", cid, check=False, timeout=10)
    # Shims (and a hung ctr) carry our socket path on their command line.
    for pid in _pids_with(ctd.address):
        if pid != ctd.proc.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    ctd.proc.terminate()
    try:
        ctd.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        ctd.proc.kill()
        ctd.proc.wait(timeout=15)
    log.close()
    deadline = time.monotonic() + 10
    while _pids_with(ctd.address) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pids_with(ctd.address):
        problems.append(f"processes left: {_pids_with(ctd.address)}")
    for mp in sorted(mounts_under(ctd.dir), key=len, reverse=True):
        problems.append(f"mount left: {mp}")
        if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True)
    for s in ctd.shim_sockets():
        if s.exists() or s.is_symlink():
            problems.append(f"shim socket left: {s}")
            s.unlink()
    for cid in ctd.ids:
        for hier in Path("/sys/fs/cgroup").iterdir():
            if (hier / cid).exists():
                problems.append(f"cgroup left: {hier / cid}")
                with contextlib.suppress(OSError):
                    (hier / cid).rmdir()
    for p in reversed(created_run_dirs):  # we made /run/containerd(/s): remove it if empty
        with contextlib.suppress(OSError):
            p.rmdir()
    if not mounts_under(ctd.dir):  # keep config.toml and containerd.log for debugging
        for sub in ("root", "state", "runc", "fifo", "opt"):
            shutil.rmtree(ctd.dir / sub, ignore_errors=True)
        for sock in (ctd.address, ctd.address + ".ttrpc"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)
    if problems:
        pytest.fail("containerd teardown found leftovers (now removed):\n  " + "\n  ".join(problems))


@pytest.fixture(scope="module")
def imported(containerd: Containerd, images_dir: Path) -> Containerd:
    for image in IMAGE_NAMES:
        t0 = time.monotonic()
        containerd.ctr("images", "import", "--snapshotter", containerd.snapshotter,
                       str(images_dir / f"{image}.tar"), timeout=300)
        print(f"imported {image} in {time.monotonic() - t0:.1f}s")
        config = oci.read_archive(images_dir / f"{image}.tar")[2]["config"]
        containerd.entrypoints[image] = config.get("Entrypoint") or []
    names = set(containerd.ctr("images", "ls", "-q").stdout.split())
    assert set(IMAGE_NAMES.values()) <= names, names
    return containerd


def test_import_names_and_config(imported: Containerd) -> None:
    out = imported.ctr("images", "ls").stdout
    for name in IMAGE_NAMES.values():
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert "linux/amd64" in line or "linux/arm64" in line, line
    # containerd sees the same config the archive has
    meta = imported.ctr("images", "check").stdout
    assert meta.count("complete") >= len(IMAGE_NAMES), meta


def test_helper_tools_run(imported: Containerd) -> None:
    r = imported.run("helper", "sh", "-c",
                     "tc -V && stress-ng --version && nft --version && pgrep -V && pkill -V"
                     " && date -u +%Y && stress-ng --cpu 1 --timeout 1s --quiet && echo STRESS-OK")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "iproute2" in r.stdout and "stress-ng, version" in r.stdout, r.stdout
    assert "nftables v" in r.stdout and "procps-ng" in r.stdout and "STRESS-OK" in r.stdout


def test_helper_has_what_the_faults_need(imported: Containerd) -> None:
    """As the faults run it: root with only NET_ADMIN added, in the pod's (here: its own)
    network namespace. nft rules and a tc qdisc listing work; netem itself needs sch_netem,
    which this host's kernel lacks (tests/guest covers netem)."""
    r = imported.run("helper", "sh", "-c",
                     "nft add table inet chaos && nft add chain inet chaos out "
                     "'{ type filter hook output priority 0; }' && nft list ruleset "
                     "&& tc qdisc show dev lo",
                     extra=["--cap-add", "CAP_NET_ADMIN"])
    assert r.returncode == 0, r.stderr + r.stdout
    assert "table inet chaos" in r.stdout and "qdisc" in r.stdout, r.stdout
    denied = imported.run("helper", "nft", "add", "table", "inet", "x")
    assert denied.returncode != 0, "without NET_ADMIN nft must be refused"


def test_runner_runs_chaos(imported: Containerd) -> None:
    """ENTRYPOINT tini -- chaos; the args replace CMD (--help), as with docker run. Read-only
    root filesystem, as the chart runs it."""
    r = imported.run("runner", "version", extra=["--read-only"])
    assert r.returncode == 0, r.stderr + r.stdout
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", r.stdout.strip()), r.stdout
    h = imported.run("runner", extra=["--read-only"])  # CMD: --help
    assert h.returncode == 0 and "Usage: chaos" in h.stdout, h.stderr + h.stdout


@pytest.mark.parametrize("experiment", ["demo-latency.yaml", "kubernetes/pod-kill.yaml"])
def test_runner_validates_a_shipped_experiment(imported: Containerd, experiment: str) -> None:
    """Offline validation of experiments copied into the image; demo-latency's probes come
    from the shipped templates (CHAOS_PROBES_DIR=/opt/chaos/probes)."""
    r = imported.run("runner", "validate", f"/opt/chaos/experiments/{experiment}",
                     extra=["--read-only"])
    assert r.returncode == 0, r.stderr + r.stdout
    assert ": valid (" in r.stdout, r.stdout


def test_demo_app_serves_and_honours_sigterm(imported: Containerd, tmp_path: Path) -> None:
    port = _free_port()
    events = tmp_path / "events"
    events.mkdir()
    events.chmod(0o777)  # the app runs as 65532
    cid = f"t-demo-{uuid.uuid4().hex[:8]}"
    args = imported.run_args(
        "demo-app", cid, net_host=True,
        env={"PORT": str(port), "SHUTDOWN_DELAY": "1500ms", "DEMO_EVENTS_DIR": "/events"},
        mounts=[f"type=bind,src={events},dst=/events,options=rbind:rw"])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not any("listening on :" in ln for ln in lines):
            assert proc.poll() is None, f"demo-app exited: {proc.stderr.read()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"no 'listening' line: {lines}"
            time.sleep(0.05)
        assert f"demo-app: listening on :{port}\n" in lines
        pid = imported.wait_running(cid)
        assert _uid_of(pid) == 65532
        body = urllib.request.urlopen(base + "/", timeout=5).read().decode()
        assert body == f"ok {socket.gethostname()}\n", body  # --net-host: the host's UTS too
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        assert urllib.request.urlopen(base + "/ready", timeout=5).status == 200

        t_kill = time.time()
        imported.ctr("task", "kill", "--signal", "SIGTERM", cid)
        deadline = time.monotonic() + 5
        while not (events / "events.log").exists():
            assert time.monotonic() < deadline, "no SIGTERM event written"
            time.sleep(0.02)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/ready", timeout=5)
        assert err.value.code == 503
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200  # still serving
        rc = proc.wait(timeout=30)
        t_exit = time.time()
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            imported.ctr("task", "kill", "--signal", "SIGKILL", cid, check=False)
            proc.wait(timeout=30)
    assert rc == 0, f"exit {rc}; stderr: {proc.stderr.read()}"  # type: ignore[union-attr]
    assert "demo-app: SIGTERM received\n" in lines, lines
    ev = (events / "events.log").read_text().splitlines()
    assert len(ev) == 2, ev
    host = socket.gethostname()
    m1 = re.fullmatch(rf"(\S+) SIGTERM {re.escape(host)} pid=(\d+)", ev[0])
    m2 = re.fullmatch(rf"(\S+) EXIT {re.escape(host)}", ev[1])
    assert m1 and m2, ev
    assert m1.group(2) == "1", "the app is PID 1 of its container"
    t1, t2 = (datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) for m in (m1, m2))
    assert 1.4 <= (t2 - t1).total_seconds() < 5, (t1, t2)  # SHUTDOWN_DELAY=1500ms
    assert t_kill - 1 <= t1.timestamp() <= t_exit


def test_pause_runs_and_stops_on_sigterm(imported: Containerd) -> None:
    v = imported.run("pause", "-v")  # ENTRYPOINT /pause, so the args are its flags
    assert v.returncode == 0 and v.stdout.startswith("pause.c v3.10"), v.stdout + v.stderr
    cid = f"t-pause-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(imported.run_args("pause", cid), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pid = imported.wait_running(cid)
        assert _uid_of(pid) == 65535
        nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{pid}/status").read_text(), re.M)
        assert nspid and nspid.group(1).split()[-1] == "1", "pause is PID 1 of its PID namespace"
        imported.ctr("task", "kill", "--signal", "SIGTERM", cid)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            imported.ctr("task", "kill", "--signal", "SIGKILL", cid, check=False)
            proc.wait(timeout=30)
    assert proc.returncode == 0, err
    assert "Shutting down, got signal" in err, err


def test_image_content_matches_what_containerd_stored(imported: Containerd, images_dir: Path) -> None:
    """The digest containerd records is the manifest digest the build reported."""
    meta = json.loads((images_dir / "images.json").read_text())
    out = imported.ctr("images", "ls").stdout
    for image, m in meta.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(IMAGE_NAMES[image] + " "))
        assert m["manifest"] in line, (image, line)
