"""Build one of the test images as an OCI archive, without Docker and without a registry.
Run by tests/cluster/build-images.sh (which owns the cache, the keys, the locks and the stamp):

    python3 tests/cluster/images/build.py IMAGE --repo REPO --out DIR --work DIR [--base-cache DIR]

IMAGE is one of pause, helper, runner, demo-app. Writes DIR/IMAGE.tar (OCI image layout) and
DIR/IMAGE.json (name, digests, sizes, times). Progress goes to stderr.

What comes from where (the Dockerfiles are read, not copied, so the two cannot drift):

- helper (docker/helper.Dockerfile): the Debian suite from FROM, the packages of its
  ``apt-get install`` lines, installed by mmdebstrap (--variant=minbase, no recommends, docs and
  man pages left out as debian:*-slim does); ENTRYPOINT/CMD/ENV/USER/WORKDIR from the file.
- runner (docker/runner.Dockerfile): the base layer is Debian bookworm's own python3 (3.11.2)
  instead of the python:3.11.11-slim-bookworm image (a CPython in /usr/local), plus what
  that image adds (ca-certificates netbase tzdata) and the final stage's apt packages (tini);
  non-apt RUN lines (useradd ...) run in the chroot. It is cached by itself (--base-cache).
  The build stage's ``pip install ... ".[kubernetes]"`` is replayed with the image's own
  python3, offline from wheels that the host's pip downloads for CPython 3.11 manylinux
  x86_64: into /usr/local (Debian's python3 reads /usr/local/lib/python3.11/dist-packages,
  not the site-packages that --prefix=/install would give), which is where the Dockerfile's
  ``COPY --from=build /install /usr/local`` puts it. The COPY lines from the build context
  are applied (honouring docker/runner.Dockerfile.dockerignore).
- demo-app (docker/demo-app.Dockerfile): its build stage's ``go build`` line runs on the host
  (same flags, CGO_ENABLED=0) in a copy of what the stage COPYs; final stage as in the file.
- pause: k8s.io/kubernetes/build/pause from the Go module cache (the version in
  tests/cluster/k8s/go.mod): linux/pause.c compiled with the CFLAGS of its Makefile
  (-Os -Wall -Werror -static), stripped; USER and ENTRYPOINT from its Dockerfile.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import dockerfile as dfp
    import oci
finally:
    sys.path.remove(str(HERE))

IMAGE_NAMES = {
    "pause": "chaos.test/pause:3.10",
    "helper": "chaos.test/helper:dev",
    "runner": "chaos.test/runner:dev",
    "demo-app": "chaos.test/demo-app:dev",
}

DEBIAN_MIRROR = os.environ.get("CHAOS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_SECURITY = os.environ.get(
    "CHAOS_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
# Left out of every Debian rootfs, as debian:*-slim's /etc/dpkg/dpkg.cfg.d/docker does.
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# Never in a layer: runtime mounts and scratch. (Paths relative to the rootfs.)
ROOTFS_EXCLUDE_CONTENTS = ("dev", "proc", "sys", "tmp", "var/tmp", "var/cache/apt/archives")
ROOTFS_EXCLUDE_FILES = ("etc/resolv.conf", "etc/hostname", "var/cache/ldconfig/aux-cache")

CHROOT_ENV = {
    "PATH": dfp.DEFAULT_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


@dataclass(frozen=True)
class Base:
    """What a Dockerfile base image contributes, emulated with Debian packages."""

    suite: str | None  # None: scratch
    packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cmd: tuple[str, ...] = ()
    python: str | None = None  # major.minor the python base image has


# Where the image differs from the real base image, it is on purpose and documented in
# docs/test-cluster.md ("Images"): python:* uses Debian's python3 of the same minor version.
BASES: tuple[tuple[re.Pattern[str], Base], ...] = (
    (
        re.compile(r"debian:(bookworm)(-\d{8})?(-slim)?(@sha256:[0-9a-f]{64})?"),
        Base("bookworm", env=(("PATH", dfp.DEFAULT_PATH),), cmd=("bash",)),
    ),
    (
        re.compile(r"python:(3\.11)(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?"),
        Base(
            "bookworm",
            packages=("python3", "ca-certificates", "netbase", "tzdata"),
            env=(("PATH", dfp.DEFAULT_PATH), ("LANG", "C.UTF-8")),
            cmd=("python3",),
            python="3.11",
        ),
    ),
    # BuildKit gives an image without any PATH the default one; so does this builder.
    (re.compile(r"scratch"), Base(None, env=(("PATH", dfp.DEFAULT_PATH),))),
)


def base_for(image: str) -> Base:
    for pat, base in BASES:
        if pat.fullmatch(image):
            return base
    raise SystemExit(
        f"build.py: error: no recipe for the base image {image!r}; teach BASES in "
        f"{Path(__file__).relative_to(HERE.parents[2])} how to make it from Debian packages"
    )


def log(msg: str) -> None:
    print(f"build.py: {msg}", file=sys.stderr, flush=True)


def die(msg: str, code: int = 1) -> None:
    print(f"build.py: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(code)


_child: subprocess.Popen[str] | None = None


def _on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM/SIGINT: stop the running step (mmdebstrap unmounts what it mounted), then let
    the finally blocks clean up."""
    if _child is not None and _child.poll() is None:
        _child.terminate()
        try:
            _child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _child.kill()
    raise SystemExit(128 + signum)


def run(cmd: list[str], *, what: str, **kw) -> subprocess.CompletedProcess[str]:
    global _child
    line = shlex.join(cmd)
    log("$ " + (line if len(line) < 400 else line[:400] + " ..."))
    stdout = kw.pop("stdout", sys.stderr)
    try:
        _child = subprocess.Popen(cmd, text=True, stdout=stdout, **kw)
    except FileNotFoundError:
        die(f"{what}: {cmd[0]} is not installed", 3)
    try:
        out, _ = _child.communicate()
        rc = _child.returncode
    finally:
        _child = None
    if rc != 0:
        die(f"{what} failed (exit {rc}); see the output above")
    return subprocess.CompletedProcess(cmd, rc, out, None)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path (from /proc/self/mountinfo)."""
    root = os.path.realpath(path)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == root or mp.startswith(root + "/"):
                out.append(mp)
    return out


def safe_rmtree(path: Path) -> None:
    """rm -rf that refuses to descend into a tree with something mounted in it (a rootfs whose
    /proc or /dev is still mounted must never be deleted through the mount)."""
    if not path.exists():
        return
    left = mounts_under(path)
    if left:
        die(f"not deleting {path}: still mounted there: {', '.join(left)} (umount them first)")
    shutil.rmtree(path)


def arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def created() -> str:
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    t = datetime.fromtimestamp(int(sde), UTC) if sde else datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# .dockerignore (the subset BuildKit documents: globs, **, ! exceptions, last match wins)


@dataclass
class Ignore:
    rules: list[tuple[bool, re.Pattern[str]]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Ignore:
        ig = cls()
        if not path.is_file():
            return ig
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            pat = line[1:].strip() if neg else line
            pat = os.path.normpath(pat).lstrip("/")
            ig.rules.append((neg, re.compile(_glob_re(pat))))
        return ig

    def excluded(self, rel: str) -> bool:
        """rel: path relative to the build context, "/" separated."""
        parts = rel.split("/")
        result = False
        for neg, rx in self.rules:
            # A pattern that matches a parent directory excludes everything below it.
            if any(rx.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
                result = not neg
        return result


def _glob_re(pat: str) -> str:
    out = []
    i = 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif pat[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pat[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pat[i]))
            i += 1
    return "".join(out)


def copy_from_context(
    context: Path, ignore: Ignore, copy: dfp.Copy, dest_root: Path, workdir: str
) -> list[tuple[Path, str]]:
    """Apply a COPY from the build context into dest_root (a directory standing for "/").
    Returns [(source path, destination path in the image)] of what was copied (top level)."""
    dest = copy.dest if copy.dest.startswith("/") else f"{workdir.rstrip('/')}/{copy.dest}"
    done = []
    for src in copy.sources:
        if any(ch in src for ch in "*?["):
            matches = sorted(p for p in context.glob(src) if not ignore.excluded(
                p.relative_to(context).as_posix()))
        else:
            matches = [context / src]
        if not matches or not all(m.exists() for m in matches):
            die(f"COPY {src}: not found in the build context {context}")
        for m in matches:
            rel = m.relative_to(context).as_posix()
            if ignore.excluded(rel):
                die(f"COPY {src}: excluded by .dockerignore")
            if m.is_dir():
                target = dest  # COPY dir dst: the directory's contents go to dst
            elif dest.endswith("/") or len(matches) > 1 or len(copy.sources) > 1:
                target = f"{dest.rstrip('/')}/{m.name}"
            else:
                target = dest
            out = dest_root / target.lstrip("/")
            if m.is_dir():
                _copytree(m, out, context, ignore)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(m, out)
            done.append((m, target))
    return done


def _copytree(src: Path, dst: Path, context: Path, ignore: Ignore) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copystat(src, dst)
    for child in sorted(src.iterdir()):
        if ignore.excluded(child.relative_to(context).as_posix()):
            continue
        if child.is_dir() and not child.is_symlink():
            _copytree(child, dst / child.name, context, ignore)
        else:
            shutil.copy2(child, dst / child.name, follow_symlinks=False)


# ---------------------------------------------------------------------------------------------
# Debian root filesystems


def rootfs_exclude(rel: str) -> bool:
    if rel in ROOTFS_EXCLUDE_FILES:
        return True
    return any(rel.startswith(d + "/") for d in ROOTFS_EXCLUDE_CONTENTS)


def mmdebstrap(
    rootfs: Path, suite: str, packages: list[str], hooks: list[str], work: Path
) -> None:
    if os.geteuid() != 0:
        die("building Debian images needs root (mmdebstrap --mode=root, chroot)", 3)
    if shutil.which("mmdebstrap") is None:
        die("mmdebstrap is not installed: apt-get install mmdebstrap", 3)
    # debian:* images are /usr-merged with the (empty) usr-is-merged package; without it apt
    # would pick usrmerge and drag perl in.
    pkgs = ["usr-is-merged", *packages]
    cmd = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        "--aptopt=APT::Install-Recommends \"false\"",
        "--aptopt=APT::Install-Suggests \"false\"",
        *[f"--dpkgopt={o}" for o in DPKG_EXCLUDES],
        "--include=" + ",".join(pkgs),
    ]
    hook_dir = Path("/usr/share/mmdebstrap/hooks/merged-usr")
    if hook_dir.is_dir():
        cmd.append(f"--hook-dir={hook_dir}")
    cmd += [f"--customize-hook={h}" for h in hooks]
    cmd += [
        suite,
        str(rootfs),
        f"deb {DEBIAN_MIRROR} {suite} main",
        f"deb {DEBIAN_MIRROR} {suite}-updates main",
        f"deb {DEBIAN_SECURITY} {suite}-security main",
    ]
    t0 = time.monotonic()
    run(cmd, what=f"mmdebstrap {suite} (network access to {DEBIAN_MIRROR} is needed)")
    log(f"mmdebstrap done in {time.monotonic() - t0:.0f}s")


def run_hooks(stage: dfp.Stage, base: Base, work: Path) -> list[str]:
    """mmdebstrap --customize-hook commands for the stage's non-apt RUN lines, in order, with
    the ENV, WORKDIR and USER in effect at each. mmdebstrap mounts /dev, /proc and /sys for
    the hooks and unmounts them afterwards."""
    env = dict(base.env)
    env.setdefault("PATH", dfp.DEFAULT_PATH)
    workdir = "/"
    user = "0:0"
    hooks = []
    copy_dests: list[str] = []
    for n, ins in enumerate(stage.instructions):
        if ins.cmd == "ENV":
            env.update(dfp._parse_env(ins.value, env))
        elif ins.cmd == "WORKDIR":
            workdir = ins.value if ins.value.startswith("/") else f"{workdir}/{ins.value}"
        elif ins.cmd == "USER":
            user = ins.value
        elif ins.cmd in ("COPY", "ADD"):
            copy_dests.append(dfp._parse_copy(ins).dest)
        elif ins.cmd == "RUN" and not dfp.run_is_apt_only(ins):
            if ins.value.startswith("["):
                die(f"line {ins.line}: exec-form RUN is not supported by the builder")
            for d in copy_dests:
                if d.rstrip("/") and d.rstrip("/") in ins.value:
                    die(
                        f"line {ins.line}: this RUN uses {d}, which a COPY puts in place; the "
                        "builder runs RUN lines in the base layer, before the COPYs"
                    )
            script = work / f"run-{n}.sh"
            script.write_text(f"cd {shlex.quote(workdir)} || exit 1\n{ins.value}\n")
            envs = " ".join(shlex.quote(f"{k}={v}") for k, v in {**CHROOT_ENV, **env}.items())
            spec = "" if user in ("0", "0:0", "root") else f"--userspec={shlex.quote(user)} "
            hooks.append(
                f'chroot {spec}"$1" /usr/bin/env -i {envs} /bin/sh -e -c '
                f'"$(cat {shlex.quote(str(script))})"'
            )
    return hooks


def debian_layer(
    df: dfp.Dockerfile, stage: dfp.Stage, work: Path, out: Path, comment: str
) -> oci.Layer:
    base = base_for(stage.base)
    if base.suite is None:
        die(f"{df.path}: a Debian layer needs a Debian-based FROM, not {stage.base}")
    pkgs = [*base.packages, *dfp.apt_packages(stage)]
    rootfs = work / "rootfs"
    hooks = run_hooks(stage, base, work)
    mmdebstrap(rootfs, base.suite, pkgs, hooks, work)
    lw = oci.LayerWriter(comment)
    lw.add_tree(rootfs, "", exclude=rootfs_exclude)
    t0 = time.monotonic()
    layer = lw.write(out)
    log(f"layer {out.name}: {layer.size / 1e6:.1f} MB gzip ({layer.uncompressed / 1e6:.0f} MB), "
        f"packed in {time.monotonic() - t0:.0f}s")
    return layer


def installed_packages(rootfs: Path) -> dict[str, str]:
    status = (rootfs / "var/lib/dpkg/status").read_text()
    out = {}
    for para in status.split("\n\n"):
        f = dict(re.findall(r"^([A-Za-z-]+): (.*)$", para, re.M))
        if f.get("Status", "").endswith(" installed"):
            out[f["Package"]] = f.get("Version", "")
    return out


def check_packages(rootfs: Path, wanted: list[str]) -> None:
    have = installed_packages(rootfs)
    for spec in wanted:
        name, _, ver = spec.partition("=")
        if name not in have:
            die(f"package {name} is not installed in {rootfs}")
        if ver and have[name] != ver:
            die(f"package {name} is {have[name]}, not {ver}")


# ---------------------------------------------------------------------------------------------
# The images


def config_for(df: dfp.Dockerfile, base: Base, extra_env: dict[str, str] | None = None) -> dict:
    cfg = df.config()
    env = {**dict(base.env), **(extra_env or {}), **cfg.env}
    cmd = list(base.cmd) if cfg.cmd is None else cfg.cmd
    out: dict[str, object] = {
        "Entrypoint": cfg.entrypoint or None,
        "Cmd": cmd or None,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "User": cfg.user,
        "WorkingDir": cfg.workdir,
        "ExposedPorts": {p: {} for p in cfg.exposed_ports} or None,
        "Labels": cfg.labels or None,
    }
    return out


def finish(image: str, layers: list[oci.Layer], config: dict, out: Path, t0: float,
           extra: dict | None = None) -> None:
    name = IMAGE_NAMES[image]
    cfg = oci.image_config(layers, architecture=arch(), config=config, created=created())
    res = oci.write_archive(out / f"{image}.tar", name, layers, cfg)
    meta = {
        "image": image,
        "name": name,
        "archive": f"{image}.tar",
        **res,
        "layers": [{"digest": ly.digest, "size": ly.size, "uncompressed": ly.uncompressed,
                    "comment": ly.comment} for ly in layers],
        "uncompressed": sum(ly.uncompressed for ly in layers),
        "build_seconds": round(time.monotonic() - t0, 1),
        **(extra or {}),
    }
    (out / f"{image}.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"{name}: {out / (image + '.tar')} ({res['size'] / 1e6:.1f} MB, "
        f"{meta['uncompressed'] / 1e6:.0f} MB unpacked) in {meta['build_seconds']}s")


def build_helper(repo: Path, out: Path, work: Path) -> None:
    t0 = time.monotonic()
    df = dfp.parse(repo / "docker/helper.Dockerfile")
    if len(df.stages) != 1:
        die("docker/helper.Dockerfile: the builder expects one stage")
    base = base_for(df.final.base)
    layer = debian_layer(df, df.final, work, work / "layer-rootfs.tar.gz",
                         f"mmdebstrap {base.suite} + {' '.join(dfp.apt_packages(df.final))}")
    check_packages(work / "rootfs", dfp.apt_packages(df.final))
    for tool in ("sh", "tc", "stress-ng", "nft", "pgrep", "pkill", "date"):
        proc = subprocess.run(["chroot", str(work / "rootfs"), "/bin/sh", "-c",
                               f"command -v {tool}"], capture_output=True, text=True)
        if proc.returncode != 0:
            die(f"helper: {tool} is not in the image")
    finish("helper", [layer], config_for(df, base), out, t0)


def build_runner(repo: Path, out: Path, work: Path, base_cache: Path | None) -> None:
    t0 = time.monotonic()
    df = dfp.parse(repo / "docker/runner.Dockerfile")
    ignore = Ignore.load(repo / "docker/runner.Dockerfile.dockerignore")
    final = df.final
    base = base_for(final.base)
    if base.python is None:
        die(f"docker/runner.Dockerfile: FROM {final.base} is not a python image")

    # 1. The base layer (Debian + python3 + the apt packages + the non-apt RUN lines).
    base_layer = None
    if base_cache is not None:  # one build per base at a time (two runner keys may share it)
        base_cache.mkdir(parents=True, exist_ok=True)
        lock = open(base_cache / "lock", "w")  # noqa: SIM115 (held until the process exits)
        fcntl.flock(lock, fcntl.LOCK_EX)
    if base_cache is not None and (base_cache / "stamp").is_file():
        base_layer = oci.Layer.from_json(json.loads((base_cache / "layer.json").read_text()),
                                         base_cache)
        log(f"runner: base layer cached in {base_cache}")
    if base_layer is None:
        target = base_cache if base_cache is not None else work
        target.mkdir(parents=True, exist_ok=True)
        (target / "stamp").unlink(missing_ok=True)
        tb = time.monotonic()
        base_layer = debian_layer(
            df, final, work, target / "layer.tar.gz",
            f"mmdebstrap {base.suite} + {' '.join([*base.packages, *dfp.apt_packages(final)])}",
        )
        check_packages(work / "rootfs", dfp.apt_packages(final))
        (target / "layer.json").write_text(json.dumps(base_layer.to_json(), indent=2) + "\n")
        (target / "stamp").write_text(f"built={created()}\ntime: {time.monotonic() - tb:.0f}s\n")
        safe_rmtree(work / "rootfs")
    t_base = time.monotonic() - t0

    # 2. The build stage: its COPYs into a source dir, its `pip install` replayed.
    build_stage = None
    from_build = [c for c in final.copies() if c.from_stage]
    if len(from_build) != 1:
        die("docker/runner.Dockerfile: expected exactly one COPY --from=<build stage>")
    cp = from_build[0]
    build_stage = df.stage(cp.from_stage or "")
    bcfg = build_stage.config(df.args)
    src_root = work / "ctx"
    for c in build_stage.copies():
        copy_from_context(repo, ignore, c, src_root, bcfg.workdir or "/")
    pips = [r for r in build_stage.runs() if re.search(r"\bpip3? install\b", r.value)]
    if len(pips) != 1:
        die("docker/runner.Dockerfile: expected one `pip install` RUN in the build stage")
    words = shlex.split(pips[0].value)
    words = words[words.index("install") + 1 :]
    prefix = next((w.split("=", 1)[1] for w in words if w.startswith("--prefix=")), None)
    reqs = [w for w in words if not w.startswith("-")]
    if prefix is None or cp.sources != (prefix,) or cp.dest.rstrip("/") != "/usr/local":
        die("docker/runner.Dockerfile: expected `pip install --prefix=P ...` and "
            "`COPY --from=build P /usr/local`; teach tests/cluster/images/build.py the new form")
    src = src_root / (bcfg.workdir or "/").lstrip("/")
    log(f"runner: build stage sources in {src}: {sorted(p.name for p in src.iterdir())}")

    # 3. Wheels, downloaded by the host's pip for the image's CPython.
    wheels = work / "wheels"
    wheels.mkdir()
    pyproject = tomllib.loads((src / "pyproject.toml").read_text())
    build_reqs = pyproject.get("build-system", {}).get("requires", [])
    pyver = base.python
    host_reqs = [str(src) + r[1:] if r.startswith(".") else r for r in reqs]
    pip_py = os.environ.get("PIP_PYTHON", sys.executable)
    tp = time.monotonic()
    run(
        [pip_py, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
         "--only-binary=:all:", "--implementation", "cp",
         "--python-version", pyver, "--abi", "cp" + pyver.replace(".", ""),
         *[f"--platform={p}" for p in _platforms()],
         "-d", str(wheels), *host_reqs, "pip", *build_reqs],
        what="pip download (network access to PyPI is needed; PIP_INDEX_URL picks a mirror)",
    )
    t_download = time.monotonic() - tp
    for junk in [*src.glob("*.egg-info"), src / "build"]:
        shutil.rmtree(junk, ignore_errors=True)
    pip_whl = sorted(wheels.glob("pip-*.whl"))
    if not pip_whl:
        die("pip download did not fetch pip itself")

    # 4. Install into /usr/local of a copy of the base rootfs, with the image's python3.
    rootfs = work / "rootfs"
    rootfs.mkdir()
    run(["tar", "--numeric-owner", "-xpzf", base_layer.path, "-C", str(rootfs)],
        what="unpacking the base layer")
    _make_dev(rootfs)
    pyexe = f"/usr/bin/python{pyver}"
    if not (rootfs / pyexe.lstrip("/")).exists():
        die(f"the base layer has no {pyexe}")
    shutil.copytree(src, rootfs / "src")
    shutil.copytree(wheels, rootfs / "tmp/wheels")
    pip_args = [
        "--disable-pip-version-check", "--no-cache-dir", "--no-index", "--find-links",
        "/tmp/wheels", "--break-system-packages", "--root-user-action=ignore",
        "--no-warn-script-location", *reqs,
    ]
    env = {**CHROOT_ENV, **dict(base.env)}
    ti = time.monotonic()
    run(["chroot", str(rootfs), "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in env.items()],
         "/bin/sh", "-c",
         f"cd /src && exec {pyexe} /tmp/wheels/{pip_whl[-1].name}/pip install "
         + shlex.join(pip_args)],
        what="pip install in the runner rootfs")
    t_install = time.monotonic() - ti
    freeze = subprocess.run(
        ["chroot", str(rootfs), pyexe, "-c",
         "import importlib.metadata as m; print('\\n'.join(sorted(f'{d.name}=={d.version}' "
         "for d in m.distributions(path=['/usr/local/lib/python3.11/dist-packages']))))"],
        capture_output=True, text=True, check=False).stdout.split()

    # 5. The COPYs from the context (final stage), into a separate tree.
    fcfg = df.config()
    app_root = work / "app"
    app_root.mkdir()
    copied = []
    for c in final.copies():
        if c.from_stage:
            continue
        if c.chown:
            die(f"line {c.line}: COPY --chown is not supported by the builder")
        copied += copy_from_context(repo, ignore, c, app_root, fcfg.workdir or "/")
    if fcfg.workdir:
        (app_root / fcfg.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    # Also into the rootfs, for the smoke test below.
    shutil.copytree(app_root, rootfs, dirs_exist_ok=True)

    # 6. Prove the console script works in the image, as the image's user, under tini.
    image_cfg = config_for(df, base)
    envs = [str(e) for e in image_cfg["Env"]]  # type: ignore[union-attr]
    smoke = ["chroot"]
    if fcfg.user:
        smoke.append(f"--userspec={fcfg.user}")
    smoke += [str(rootfs), "/usr/bin/env", "-i", *envs, "/bin/sh", "-c",
              f"cd {shlex.quote(fcfg.workdir or '/')} && exec /usr/bin/tini -s -- chaos version"]
    proc = run(smoke, what="chaos version inside the runner rootfs", stdout=subprocess.PIPE)
    version = proc.stdout.strip()
    log(f"runner: `tini -s -- chaos version` in the rootfs as {fcfg.user}: {version}")

    # 7. Layers: base, /usr/local, the COPYs.
    lw = oci.LayerWriter(f"pip install {' '.join(reqs)} (into /usr/local)")
    lw.add_parents("usr/local/x", like_root=str(rootfs))
    lw.add_tree(rootfs / "usr/local", "usr/local")
    pip_layer = lw.write(work / "layer-pip.tar.gz")
    lw = oci.LayerWriter("COPY " + " ".join(f"{s.relative_to(repo)} {d}" for s, d in copied))
    for dirpath, dirnames, filenames in os.walk(app_root):
        rel_dir = os.path.relpath(dirpath, app_root)
        for name in sorted(dirnames) + sorted(filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            lw.add_path(os.path.join(dirpath, name), rel, owner=(0, 0))
    copy_layer = lw.write(work / "layer-copy.tar.gz")
    safe_rmtree(rootfs)
    finish("runner", [base_layer, pip_layer, copy_layer], image_cfg, out, t0, {
        "chaos_version": version,
        "python_packages": freeze,
        "seconds": {"base": round(t_base, 1), "pip_download": round(t_download, 1),
                    "pip_install": round(t_install, 1)},
    })


def _platforms() -> list[str]:
    m = platform.machine()
    return [f"manylinux_2_{v}_{m}" for v in (36, 35, 34, 28, 17)] + [
        f"manylinux2014_{m}", f"manylinux_2_5_{m}", f"manylinux1_{m}", f"linux_{m}"]


def _make_dev(rootfs: Path) -> None:
    dev = rootfs / "dev"
    dev.mkdir(exist_ok=True)
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        p = dev / name
        if not p.exists():
            os.mknod(p, 0o666 | 0o020000, os.makedev(1, minor))
            os.chmod(p, 0o666)


def build_demo_app(repo: Path, out: Path, work: Path) -> None:
    t0 = time.monotonic()
    df = dfp.parse(repo / "docker/demo-app.Dockerfile")
    context = repo / "docker/demo-app"
    ignore = Ignore.load(repo / "docker/demo-app.Dockerfile.dockerignore")
    final = df.final
    base = base_for(final.base)
    if base.suite is not None:
        die("docker/demo-app.Dockerfile: the builder expects FROM scratch in the final stage")
    copies = final.copies()
    if len(copies) != 1 or not copies[0].from_stage:
        die("docker/demo-app.Dockerfile: expected one COPY --from=<build stage> in the final stage")
    cp = copies[0]
    bstage = df.stage(cp.from_stage or "")
    bcfg = bstage.config(df.args)
    src_root = work / "ctx"
    for c in bstage.copies():
        copy_from_context(context, ignore, c, src_root, bcfg.workdir or "/")
    src = src_root / (bcfg.workdir or "/").lstrip("/")
    builds = [r for r in bstage.runs() if re.search(r"\bgo build\b", r.value)]
    if len(builds) != 1:
        die("docker/demo-app.Dockerfile: expected one `go build` RUN in the build stage")
    words = shlex.split(builds[0].value)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    if words[:2] != ["go", "build"] or "-o" not in words:
        die("docker/demo-app.Dockerfile: expected `[VAR=val ...] go build ... -o OUT ...`")
    i = words.index("-o")
    built_path = words[i + 1]
    if cp.sources != (built_path,):
        die(f"docker/demo-app.Dockerfile: the COPY takes {cp.sources}, go build writes "
            f"{built_path}")
    binary = work / "bin" / Path(built_path).name
    words[i + 1] = str(binary)
    go = os.environ.get("GO", "go")
    if shutil.which(go) is None:
        die("Go is not installed (needed for the demo-app image); install Go >= 1.22", 3)
    genv = {**os.environ, "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local"),
            "GOFLAGS": "-mod=mod", **env}
    run([go, *words[1:]], what="go build (demo-app)", cwd=src, env=genv)
    _check_static(binary)
    os.utime(binary, (oci.fixed_mtime(), oci.fixed_mtime()))  # a reproducible layer
    lw = oci.LayerWriter(f"COPY --from={cp.from_stage} {built_path} {cp.dest}")
    lw.add_parents(cp.dest.lstrip("/"))
    lw.add_path(binary, cp.dest.lstrip("/"), owner=(0, 0))
    layer = lw.write(work / "layer.tar.gz")
    finish("demo-app", [layer], config_for(df, base), out, t0)


def build_pause(repo: Path, out: Path, work: Path) -> None:
    t0 = time.monotonic()
    k8s_version = _modver(repo / "tests/cluster/k8s/go.mod", "k8s.io/kubernetes")
    pause_dir = _module_dir(f"k8s.io/kubernetes@{k8s_version}") / "build/pause"
    makefile = (pause_dir / "Makefile").read_text()
    tag = re.search(r"^TAG \?= (\S+)", makefile, re.M)
    cflags = re.search(r"^CFLAGS = (.*)$", makefile, re.M)
    if not tag or not cflags:
        die(f"cannot read TAG and CFLAGS from {pause_dir / 'Makefile'}")
    # REV is `git describe` upstream; there is no git in the module zip, so: the k8s version.
    flags = (cflags.group(1).replace("$(TAG)", tag.group(1)).replace("$(REV)", k8s_version)
             .split())
    df = dfp.parse(pause_dir / "Dockerfile", build_args={"BASE": "scratch", "ARCH": arch()})
    adds = df.final.copies()
    if len(adds) != 1 or adds[0].dest != "/pause":
        die(f"{pause_dir / 'Dockerfile'}: expected one ADD .../pause-linux-ARCH /pause")
    cc = os.environ.get("CC", "gcc")
    binary = work / "pause"
    run([cc, *flags, "-o", str(binary), str(pause_dir / "linux/pause.c")],
        what=f"{cc} pause.c (needs gcc and the static libc, libc6-dev)")
    run([os.environ.get("STRIP", "strip"), str(binary)], what="strip pause")
    _check_static(binary)
    os.utime(binary, (oci.fixed_mtime(), oci.fixed_mtime()))  # a reproducible layer
    lw = oci.LayerWriter(f"{cc} {' '.join(flags)} k8s.io/kubernetes@{k8s_version}/build/pause"
                         "/linux/pause.c")
    lw.add_path(binary, "pause", owner=(0, 0))
    layer = lw.write(work / "layer.tar.gz")
    version = subprocess.run([str(binary), "-v"], capture_output=True, text=True).stdout.strip()
    finish("pause", [layer], config_for(df, base_for("scratch")), out, t0,
           {"pause_version": version, "source": str(pause_dir)})


def _modver(gomod: Path, module: str) -> str:
    for line in gomod.read_text().splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] == module and w[1].startswith("v"):
            return w[1]
        if len(w) >= 3 and w[0] == "require" and w[1] == module:
            return w[2]
    die(f"cannot find {module} in {gomod}")
    raise AssertionError


def _module_dir(modver: str) -> Path:
    go = os.environ.get("GO", "go")
    if shutil.which(go) is None:
        die("Go is not installed (the pause image is built from the k8s.io/kubernetes module "
            "source); install Go >= 1.22", 3)
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True,
                              check=True).stdout.strip()
    d = Path(modcache) / modver
    if (d / "build/pause/linux/pause.c").is_file():
        return d
    log(f"{modver} is not in the module cache; go mod download")
    proc = run([go, "mod", "download", "-json", modver], what=f"go mod download {modver}",
               cwd="/", stdout=subprocess.PIPE,
               env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"})
    return Path(json.loads(proc.stdout)["Dir"])


def _check_static(binary: Path) -> None:
    data = binary.read_bytes()
    if data[:4] != b"\x7fELF":
        die(f"{binary} is not an ELF binary")
    if elf_interpreter(data) is not None:
        die(f"{binary} is dynamically linked; the image has no libc")


def elf_interpreter(data: bytes) -> str | None:
    """The PT_INTERP of a 64-bit little-endian ELF, or None for a static binary."""
    import struct

    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 3:
            return data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", choices=sorted(IMAGE_NAMES))
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--base-cache", type=Path)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigterm)
    os.umask(0o022)  # directories the builder makes go into the images as 0755
    repo = a.repo.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    safe_rmtree(a.work)
    a.work.mkdir(parents=True)
    try:
        if a.image == "pause":
            build_pause(repo, a.out, a.work)
        elif a.image == "helper":
            build_helper(repo, a.out, a.work)
        elif a.image == "runner":
            build_runner(repo, a.out, a.work, a.base_cache)
        else:
            build_demo_app(repo, a.out, a.work)
    finally:
        if not mounts_under(a.work):
            shutil.rmtree(a.work, ignore_errors=True)


if __name__ == "__main__":
    main()
