"""The images built without Docker (tests/cluster/build-images.sh) are what docker/*.Dockerfile
say: the config (ENTRYPOINT, CMD, ENV, USER, WORKDIR, EXPOSE) and the content (every apt package
installed, every COPY in place, the helper's tools on PATH). Reads the cached OCI archives only
(every blob is checked against its digest); fast once the images are built."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import IMAGE_NAMES, REPO_ROOT, in_ci, load_recipe_module
from imagefs import ImageFS, elf_interpreter, is_device

dfp = load_recipe_module("dockerfile")
build = load_recipe_module("build")

DOCKERFILES = {
    "helper": REPO_ROOT / "docker" / "helper.Dockerfile",
    "runner": REPO_ROOT / "docker" / "runner.Dockerfile",
    "demo-app": REPO_ROOT / "docker" / "demo-app.Dockerfile",
}
HELPER_TOOLS = ("sh", "tc", "stress-ng", "nft", "pgrep", "pkill", "date")


def env_of(config: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in config.get("Env") or [])


def test_every_dockerfile_is_covered() -> None:
    found = {p.name.removesuffix(".Dockerfile") for p in (REPO_ROOT / "docker").glob("*.Dockerfile")}
    assert found == set(DOCKERFILES), "a new Dockerfile needs a recipe in build.py and a test here"


def test_the_parser_reads_what_the_dockerfiles_say() -> None:
    """A few fixed facts, so that a parser bug cannot make both sides agree on nonsense."""
    helper = dfp.parse(DOCKERFILES["helper"])
    assert dfp.apt_packages(helper.final) == [
        "iproute2", "stress-ng", "procps", "coreutils", "nftables"]
    assert helper.config().entrypoint == [] and helper.config().cmd == ["sh"]
    runner = dfp.parse(DOCKERFILES["runner"])
    assert [s.name for s in runner.stages] == ["build", None]
    assert dfp.apt_packages(runner.final) == ["tini=0.19.0-1+b3"]
    cfg = runner.config()
    assert cfg.entrypoint == ["/usr/bin/tini", "--", "chaos"] and cfg.cmd == ["--help"]
    assert cfg.user == "65532:65532" and cfg.workdir == "/opt/chaos"
    assert cfg.env == {
        "XDG_STATE_HOME": "/var/lib/chaos", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1", "CHAOS_PROBES_DIR": "/opt/chaos/probes"}
    demo = dfp.parse(DOCKERFILES["demo-app"])
    assert demo.final.base == "scratch"
    assert demo.config().entrypoint == ["/demo-app"] and demo.config().user == "65532:65532"


def test_parser_edge_cases() -> None:
    df = dfp.parse_text(
        "# syntax=docker/dockerfile:1\nARG V=3\nFROM debian:bookworm AS b\n"
        "RUN DEBIAN_FRONTEND=noninteractive apt-get install -y \\\n"
        "# a comment inside the continuation\n    a b=1 && rm -rf /var/lib/apt/lists/*\n"
        "FROM scratch\nCMD [\"x\"]\nENTRYPOINT /bin/run --flag\nENV A=1 B=\"two words\"\n"
        "ENV C $A-x\nWORKDIR /w\nWORKDIR sub\nEXPOSE 80 53/udp\n"
    )
    assert df.stages[0].base == "debian:bookworm" and df.stages[0].name == "b"
    assert dfp.apt_packages(df.stages[0]) == ["a", "b=1"]
    assert dfp.run_is_apt_only(df.stages[0].runs()[0])
    cfg = df.config()
    assert cfg.entrypoint == ["/bin/sh", "-c", "/bin/run --flag"]
    assert cfg.cmd == ["x"]  # set in this stage before ENTRYPOINT: kept, as Docker keeps it
    assert cfg.env == {"A": "1", "B": "two words", "C": "1-x"}
    assert cfg.workdir == "/w/sub" and cfg.exposed_ports == ["80/tcp", "53/udp"]


@pytest.mark.parametrize("image", sorted(IMAGE_NAMES))
def test_archive_is_tagged_for_containerd(image: str, image_fs) -> None:
    fs: ImageFS = image_fs(image)
    assert fs.layout == {"imageLayoutVersion": "1.0.0"}
    ann = fs.manifest_desc["annotations"]
    name = IMAGE_NAMES[image]
    assert ann["io.containerd.image.name"] == name
    assert ann["org.opencontainers.image.ref.name"] == name.rsplit(":", 1)[1]
    assert fs.manifest_desc["platform"] == {"architecture": build.arch(), "os": "linux"}
    assert fs.image_config["os"] == "linux" and fs.image_config["architecture"] == build.arch()


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_config_is_the_dockerfiles(image: str, image_fs) -> None:
    fs: ImageFS = image_fs(image)
    cfg = dfp.parse(DOCKERFILES[image]).config()
    got = fs.config
    assert got.get("Entrypoint") == (cfg.entrypoint or None)
    if cfg.cmd is not None:
        assert got.get("Cmd") == (cfg.cmd or None)
    env = env_of(got)
    for k, v in cfg.env.items():
        assert env.get(k) == v, f"ENV {k}"
    assert "PATH" in env
    assert got.get("User") == cfg.user
    assert got.get("WorkingDir") == cfg.workdir
    assert sorted(got.get("ExposedPorts") or {}) == sorted(cfg.exposed_ports)
    if cfg.workdir:
        ti = fs.lookup(cfg.workdir)
        assert ti is not None and ti.isdir(), f"WORKDIR {cfg.workdir} is not in the image"


def test_pause_config_is_upstreams(image_fs) -> None:
    """pause has no Dockerfile here: it must match k8s.io/kubernetes' build/pause/Dockerfile."""
    fs: ImageFS = image_fs("pause")
    version = build._modver(REPO_ROOT / "tests/cluster/k8s/go.mod", "k8s.io/kubernetes")
    modcache = subprocess.run([os.environ.get("GO", "go"), "env", "GOMODCACHE"],
                              capture_output=True, text=True, check=True).stdout.strip()
    upstream = Path(modcache) / f"k8s.io/kubernetes@{version}" / "build/pause/Dockerfile"
    cfg = dfp.parse(upstream, build_args={"BASE": "scratch", "ARCH": build.arch()}).config()
    assert cfg.entrypoint == ["/pause"] and cfg.user == "65535:65535"
    assert fs.config.get("Entrypoint") == cfg.entrypoint
    assert fs.config.get("User") == cfg.user
    assert not fs.config.get("Cmd")
    assert set(fs.entries) == {"pause"}
    pause = fs.lookup("/pause")
    assert pause is not None and pause.mode & 0o111 and pause.uid == 0
    assert elf_interpreter(fs.read("/pause")) is None, "/pause must be static (scratch image)"
    assert b"v3.10" in fs.read("/pause")  # -DVERSION=v<TAG>-<k8s version>, TAG from the Makefile


@pytest.mark.parametrize("image", ["helper", "runner"])
def test_every_apt_package_is_installed(image: str, image_fs) -> None:
    fs: ImageFS = image_fs(image)
    status = fs.dpkg_status()
    df = dfp.parse(DOCKERFILES[image])
    wanted = dfp.apt_packages(df.final)
    assert wanted
    for spec in wanted:
        name, _, version = spec.partition("=")
        assert name in status, f"{name} is not installed"
        assert status[name]["Status"] == "install ok installed", status[name]["Status"]
        if version:
            assert status[name]["Version"] == version, f"{name}: pinned {version}"
    assert "usrmerge" not in status and "perl" not in status  # usr-is-merged, like debian:*
    apt_lists = [p for p in fs.files_under("var/lib/apt/lists") if not p.endswith(("/lock",
                                                                                   "/partial"))]
    assert not apt_lists, "rm -rf /var/lib/apt/lists/* as in the Dockerfile"


def test_helper_tools_are_on_path(image_fs) -> None:
    fs: ImageFS = image_fs("helper")
    missing = [t for t in HELPER_TOOLS if fs.which(t) is None]
    assert not missing, f"not on PATH or not executable in the helper image: {missing}"


def test_runner_python_is_bookworms_3_11(image_fs) -> None:
    fs: ImageFS = image_fs("runner")
    status = fs.dpkg_status()
    assert status["python3"]["Version"].startswith("3.11.")
    assert fs.is_executable("/usr/bin/python3.11") and fs.is_executable("/usr/bin/tini")
    chaos = fs.read("/usr/local/bin/chaos")
    assert chaos.startswith(b"#!/usr/bin/python3"), chaos[:40]
    assert fs.which("chaos") == "/usr/local/bin/chaos"


def test_runner_copies_are_in_place(image_fs) -> None:
    """COPY experiments/probes, and the build stage's COPY chaos + pip install into /usr/local
    (Debian's python3 reads /usr/local/lib/python3.11/dist-packages)."""
    fs: ImageFS = image_fs("runner")
    ignore = build.Ignore.load(REPO_ROOT / "docker/runner.Dockerfile.dockerignore")
    df = dfp.parse(DOCKERFILES["runner"])
    checked = 0
    for c in df.final.copies():
        if c.from_stage:
            continue
        for src in c.sources:
            root = REPO_ROOT / src
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                rel = f.relative_to(REPO_ROOT).as_posix()
                if ignore.excluded(rel):
                    continue
                target = f"{c.dest.rstrip('/')}/{f.relative_to(root).as_posix()}"
                assert fs.read(target) == f.read_bytes(), (
                    f"{target} differs from {rel}: edited after the image was built? Re-run")
                ti = fs.lookup(target)
                assert ti is not None and ti.uid == 0 and ti.gid == 0
                checked += 1
    assert checked >= 4
    site = "/usr/local/lib/python3.11/dist-packages"
    for f in sorted((REPO_ROOT / "chaos").rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        rel = f.relative_to(REPO_ROOT).as_posix()
        assert fs.read(f"{site}/{rel}") == f.read_bytes(), (
            f"{rel} differs in the image: was it edited after the image was built? Re-run")
    assert fs.exists(f"{site}/chaos/py.typed")
    assert fs.exists(f"{site}/kubernetes/__init__.py"), "the [kubernetes] extra is installed"
    dist = [p for p in fs.entries if p.startswith(site.lstrip("/") + "/chaos_runner-")
            and p.endswith(".dist-info/METADATA")]
    assert len(dist) == 1, dist


def test_runner_user_owns_the_state_dir(image_fs) -> None:
    fs: ImageFS = image_fs("runner")
    passwd = fs.read("/etc/passwd").decode()
    line = next(ln for ln in passwd.splitlines() if ln.startswith("chaos:"))
    assert line.split(":")[2:4] == ["65532", "65532"] and line.split(":")[5] == "/var/lib/chaos"
    assert "chaos:x:65532:" in fs.read("/etc/group").decode()
    state = fs.lookup("/var/lib/chaos")
    assert state is not None and state.isdir() and (state.uid, state.gid) == (65532, 65532)


def test_demo_app_is_static_and_unprivileged(image_fs) -> None:
    fs: ImageFS = image_fs("demo-app")
    assert set(fs.entries) == {"demo-app"}
    ti = fs.lookup("/demo-app")
    assert ti is not None and ti.mode & 0o111 and ti.uid == 0
    assert elf_interpreter(fs.read("/demo-app")) is None
    assert fs.config["User"] == "65532:65532"


@pytest.mark.parametrize("image", sorted(IMAGE_NAMES))
def test_no_host_or_runtime_leftovers(image: str, image_fs) -> None:
    fs: ImageFS = image_fs(image)
    bad = [p for p, (ti, _) in fs.entries.items()
           if is_device(ti) or p.startswith(("dev/", "proc/", "sys/", "tmp/"))
           or p in ("etc/resolv.conf", "etc/hostname")]
    assert not bad, f"runtime-only or host files in the image: {bad[:10]}"
    owners = {(ti.uname, ti.gname) for ti, _ in fs.entries.values()}
    assert owners <= {("", "")}, "layers carry numeric owners only"


def test_pause_layer_is_reproducible(tmp_path: Path) -> None:
    """Where it is cheap, layers are bit-for-bit reproducible: two builds of the pause image
    give the same layer digest (sorted entries, numeric owners, fixed mtime, no gzip time)."""
    digests = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        r = subprocess.run(
            ["python3", str(REPO_ROOT / "tests/cluster/images/build.py"), "pause", "--repo",
             str(REPO_ROOT), "--out", str(out), "--work", str(tmp_path / f"work{n}")],
            capture_output=True, text=True, timeout=120)
        if r.returncode == 3 and not in_ci():
            pytest.skip(r.stderr.strip().splitlines()[-1])
        assert r.returncode == 0, r.stderr
        digests.append(json.loads((out / "pause.json").read_text())["layers"][0]["digest"])
    assert digests[0] == digests[1]
