"""The test images (tests/cluster/build-images.sh), built once per session.

``images_dir`` (session): the output dir of build-images.sh (``<image>.tar`` OCI archives,
``images.json``), or ``$CHAOS_IMAGES`` if that is set. The build runs in
``pytest_collection_finish``, before any test, so that a cold build (~3-4 min) does not count
against a test's timeout; its log goes to ``.pytest_cache/d/chaos-images/build-images.log``.
A failing build fails the tests when ``$CI`` is set. Outside CI, a missing prerequisite (exit 3:
not root, no mmdebstrap, no Go, no python3.11) skips them with a banner; any other failure fails.

``image_fs`` (session): ``image_fs(name)`` -> ``ImageFS`` of that archive (see imagefs.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = REPO_ROOT / "tests" / "cluster" / "build-images.sh"
IMAGES_PY = REPO_ROOT / "tests" / "cluster" / "images"
BUILD_TIMEOUT_S = float(os.environ.get("CHAOS_IMAGES_BUILD_TIMEOUT", "1800"))

#: The names the images are imported under (index annotation io.containerd.image.name).
IMAGE_NAMES = {
    "pause": "chaos.test/pause:3.10",
    "helper": "chaos.test/helper:dev",
    "runner": "chaos.test/runner:dev",
    "demo-app": "chaos.test/demo-app:dev",
}

_BANNER = "!" * 78


def load_recipe_module(name: str) -> ModuleType:
    """tests/cluster/images/<name>.py under a unique module name (it is not a package)."""
    modname = f"chaos_images_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, IMAGES_PY / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass
class _Result:
    dir: Path | None = None
    action: str = ""  # "fail" or "skip" when dir is None
    message: str = ""


_result: _Result | None = None
_lock = threading.Lock()


def _check_dir(d: Path) -> list[str]:
    return [f"{i}.tar" for i in IMAGE_NAMES if not (d / f"{i}.tar").is_file()]


def _resolve(log_dir: Path, say) -> _Result:
    env_dir = os.environ.get("CHAOS_IMAGES")
    if env_dir:
        d = Path(env_dir).expanduser().resolve()
        missing = _check_dir(d)
        if missing:
            return _Result(action="fail", message=f"CHAOS_IMAGES={env_dir} lacks {missing}")
        return _Result(dir=d)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "build-images.log"
    rel = BUILD_SH.relative_to(REPO_ROOT)
    say(f"images: running {rel} (a no-op when cached; cold: ~3-4 min); log: {log_path}")
    t0 = time.monotonic()
    try:
        with open(log_path, "w") as log:
            proc = subprocess.run(["bash", str(BUILD_SH)], stdout=subprocess.PIPE, stderr=log,
                                  text=True, timeout=BUILD_TIMEOUT_S, cwd=REPO_ROOT)
        out, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired:
        out, rc = "", -1
        with open(log_path, "a") as log:
            log.write(f"\n[conftest] build-images.sh timed out after {BUILD_TIMEOUT_S:.0f}s\n")
    build_log = log_path.read_text(errors="replace")
    if rc == 0:
        lines = out.strip().splitlines()
        d = Path(lines[-1]) if lines else None
        missing = _check_dir(d) if d else list(IMAGE_NAMES)
        if d and not missing:
            say(f"images: ready in {time.monotonic() - t0:.1f}s: {d}")
            return _Result(dir=d)
        build_log += f"\n[conftest] build-images.sh printed {out!r}; missing {missing}\n"
    tail = "\n".join(build_log.splitlines()[-40:])
    message = f"{rel} failed (exit {rc}); full log: {log_path}\n--- last lines ---\n{tail}"
    if rc == 3 and not in_ci():
        return _Result(
            action="skip",
            message=(
                f"\n{_BANNER}\nSKIPPING image tests: a prerequisite of {rel} is missing:\n"
                f"{tail.splitlines()[-1] if tail else ''}\n"
                "They need root, mmdebstrap, gcc (+ libc6-dev), Go and python3 >= 3.11, and\n"
                "network access to deb.debian.org and PyPI. See docs/test-cluster.md (Images).\n"
                f"{_BANNER}"
            ),
        )
    return _Result(action="fail", message=message)


def _get(config: pytest.Config) -> _Result:
    global _result
    with _lock:
        if _result is None:
            reporter = config.pluginmanager.get_plugin("terminalreporter")

            def say(msg: str) -> None:
                if reporter is not None:
                    reporter.write_line(msg)

            cache = getattr(config, "cache", None)
            log_dir = (Path(str(cache.mkdir("chaos-images"))) if cache is not None
                       else Path(tempfile.gettempdir()))
            _result = _resolve(log_dir, say)
        return _result


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any("images_dir" in getattr(item, "fixturenames", ()) for item in session.items):
        res = _get(session.config)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if res.action == "skip" and reporter is not None:
            reporter.write_line(res.message, yellow=True, bold=True)


@pytest.fixture(scope="session")
def images_dir(request: pytest.FixtureRequest) -> Path:
    res = _get(request.config)
    if res.dir is None:
        if res.action == "skip":
            pytest.skip(res.message)
        pytest.fail(res.message, pytrace=False)
    return res.dir


@pytest.fixture(scope="session")
def image_fs(images_dir: Path):
    from imagefs import ImageFS

    cache: dict[str, ImageFS] = {}

    def get(image: str) -> ImageFS:
        if image not in cache:
            cache[image] = ImageFS(images_dir / f"{image}.tar")
        return cache[image]

    yield get
    for fs in cache.values():
        fs.close()
