"""Shared pieces of the benchmarks: what a figure is, the context a benchmark runs in, statistics.

A benchmark is a module ``bench/b_<name>.py`` with a docstring (its first line is the one-line
description ``bench/run --list`` prints) and ``def run(ctx: Ctx) -> list[Figure]``. It measures
ours and the peer in the same run, on the same machine, against the same service, and returns
raw samples; ``bench/run`` does the statistics, the table and ``bench/results/latest.json``.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The engine's own nearest-rank percentile (no interpolation), so figures match the journal's.
from chaos.engine.slo import percentile

__all__ = ["RESULTS", "ROOT", "Ctx", "Figure", "free_port", "k8s_conftest", "machine_info",
           "percentile"]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@dataclass
class Figure:
    """One comparable figure: samples for ours and for the peer, and the target to reach.

    ``target`` is a predicate on (our median, peer median) and ``target_text`` says it in words,
    e.g. ``"<= 0.5x peer"``. A figure with no peer (``peer=None``) may still have a target on
    ours alone (then the predicate gets ``peer_median=nan``)."""

    bench: str
    name: str
    unit: str
    ours: list[float]
    peer: list[float] | None = None
    peer_name: str = ""
    target_text: str = ""
    target: Callable[[float, float], bool] | None = None
    #: which statistic the target applies to: "median" or "p95" or "p99"
    target_stat: str = "median"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def stat(self, samples: list[float] | None, which: str) -> float:
        if not samples:
            return math.nan
        if which == "median":
            return statistics.median(samples)
        return percentile(samples, float(which.lstrip("p")))

    def summary(self) -> dict[str, Any]:
        ours_med, ours_p95 = self.stat(self.ours, "median"), self.stat(self.ours, "p95")
        peer_med = self.stat(self.peer, "median")
        peer_p95 = self.stat(self.peer, "p95")
        ratio = ours_med / peer_med if self.peer and peer_med not in (0, math.nan) else math.nan
        met: bool | None = None
        if self.target is not None:
            met = bool(self.target(self.stat(self.ours, self.target_stat),
                                   self.stat(self.peer, self.target_stat)))
        return {
            "bench": self.bench,
            "name": self.name,
            "unit": self.unit,
            "ours": {"n": len(self.ours), "median": ours_med, "p95": ours_p95,
                     "p99": self.stat(self.ours, "p99"), "samples": self.ours},
            "peer": None if self.peer is None else {
                "name": self.peer_name, "n": len(self.peer), "median": peer_med,
                "p95": peer_p95, "p99": self.stat(self.peer, "p99"), "samples": self.peer},
            "ratio": ratio,
            "target": self.target_text,
            "target_stat": self.target_stat,
            "met": met,
            "notes": self.notes,
            "extra": self.extra,
        }


@dataclass
class Ctx:
    """Where things are. Benchmarks take every path from here, never from guesses."""

    python: str                 # the project's venv python (has `chaos` installed)
    chaos: str                  # our CLI
    ctk_venv: Path              # Chaos Toolkit's separate venv
    toxiproxy: str              # toxiproxy-server binary
    loadgen: str                # bench/loadgen binary
    workdir: Path               # a scratch directory for this run
    quick: bool = False         # fewer trials, for developing a benchmark

    @property
    def ctk(self) -> str:
        return str(self.ctk_venv / "bin" / "chaos")

    @property
    def ctk_python(self) -> str:
        return str(self.ctk_venv / "bin" / "python")

    def trials(self, full: int, quick: int = 3) -> int:
        return quick if self.quick else full


def k8s_conftest() -> Any:
    """tests/k8s/conftest.py as a plain module (it only needs pytest importable): the test
    cluster's helpers (start_cluster, _create_args, wait_for, ...) for the Kubernetes benches.
    Loaded once; its dataclasses look their module up in sys.modules."""
    import importlib.util

    name = "_chaos_k8s_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "k8s" / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmd(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(ctx: Ctx | None = None) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _cmd("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "python": sys.version.split()[0],
        "go": _cmd("go", "version"),
        "commit": _cmd("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "load_average_at_start": os.getloadavg(),
    }
    if ctx is not None:
        info["chaos_toolkit"] = _cmd(ctx.ctk_python, "-c",
                                     "import importlib.metadata as m; print(', '.join("
                                     "f'{p} {m.version(p)}' for p in ('chaostoolkit', "
                                     "'chaostoolkit-lib', 'chaostoolkit-addons', "
                                     "'chaostoolkit-kubernetes')))")
        # Built from source without release ldflags, it reports "git": the cache dir names it.
        info["toxiproxy"] = f"Toxiproxy {Path(ctx.toxiproxy).parents[1].name.split('-', 1)[-1]}"
    return info
