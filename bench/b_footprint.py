"""Runner footprint: CPU seconds and peak RSS of a 60 s run with 4 HTTP probes at 4 Hz.

Both runners watch the same loopback service (in the benchmark process, so it is not charged to
them) for 60 s (10 s with --quick) with four HTTP probes every 250 ms and nothing breaking. Ours:
a fault-free experiment whose 60 s baseline samples four probes, each under an SLO that breaks on
the first failed sample. Chaos Toolkit: the safeguards control (chaostoolkit-addons) with four
http probes at ``frequency: 0.25`` and ``tolerance: 200``, a steady-state hypothesis of one http
probe (run before and after the method), and a method of one http probe followed by a 60 s pause.
The runner is started directly (no shell) and reaped with ``os.wait4``: CPU is ru_utime + ru_stime
and peak RSS is ru_maxrss, both from the start of the process (interpreter start-up and imports
included). wait4 folds in every descendant the runner itself waited for (CPU summed, RSS as the
largest single process); a sampler lists the runner's descendants every 0.5 s so one it did
not wait for would show up in the figure's extra. Each trial also runs both experiments with a
0 s length, which isolates start-up and exit from the cost of watching.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Ctx, Figure
from service import Service

BENCH = "footprint"
PEER = "Chaos Toolkit 1.19"
PROBES = 4
INTERVAL = 0.25


@dataclass
class Usage:
    cpu_s: float
    rss_mib: float
    wall_s: float
    requests: dict[str, int]
    descendants: list[str] = field(default_factory=list)


class Descendants:
    """Samples the processes under ``pid`` (from /proc) until closed."""

    def __init__(self, pid: int) -> None:
        self.seen: dict[int, str] = {}
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="descendants")
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            parents: dict[int, list[tuple[int, str]]] = {}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    text = stat.read_text()
                except OSError:
                    continue  # gone meanwhile
                name = text[text.index("(") + 1:text.rindex(")")]
                ppid = int(text.rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append((int(stat.parent.name), name))
            todo = [self._pid]
            while todo:
                for child, name in parents.get(todo.pop(), []):
                    self.seen[child] = name
                    todo.append(child)

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return [f"{pid} {name}" for pid, name in sorted(self.seen.items())]


def measure(argv: list[str], trial_dir: Path, service: Service, env: dict[str, str] | None = None,
            expect_rc: int = 0) -> Usage:
    """Run ``argv`` to completion and return its rusage (and its descendants')."""
    started = time.monotonic()
    with (trial_dir / "stdout").open("wb") as out, (trial_dir / "stderr").open("wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=trial_dir, env=env)
        watcher = Descendants(proc.pid)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    wall = time.monotonic() - started
    descendants = watcher.close()
    if proc.returncode != expect_rc:
        tail = "\n".join((trial_dir / "stderr").read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{argv[0]} in {trial_dir} exited {proc.returncode}, expected "
                           f"{expect_rc}:\n{tail}")
    return Usage(cpu_s=rusage.ru_utime + rusage.ru_stime, rss_mib=rusage.ru_maxrss / 1024,
                 wall_s=wall, requests=dict(service.hits), descendants=descendants)


def ours_experiment(service: Service, duration: float) -> dict[str, Any]:
    names = [f"p{i + 1}" for i in range(PROBES)]
    return {
        "apiVersion": "chaos/v1",
        "kind": "Experiment",
        "metadata": {"name": "bench-footprint"},
        "spec": {
            "target": {"platform": "local"},
            "baseline": f"{duration:g}s",   # no faults: the whole run is probing and judging
            "recovery": "0s",
            "probes": [{"name": n, "interval": f"{INTERVAL * 1000:g}ms",
                        "http": {"url": service.url(f"/{n}"), "timeout": "2s",
                                 "expect": {"status": [200]}}} for n in names],
            "slos": [{"name": f"{n}-up", "probe": n, "consecutiveFailures": "< 1"}
                     for n in names],
            "limits": {"maxDuration": f"{duration + 60:g}s"},
        },
    }


def run_ours(ctx: Ctx, service: Service, duration: float, trial_dir: Path) -> Usage:
    trial_dir.mkdir(parents=True)
    exp = trial_dir / "experiment.yaml"  # JSON is YAML
    exp.write_text(json.dumps(ours_experiment(service, duration)))
    try:
        return measure([ctx.chaos, "run", str(exp), "--journal", str(trial_dir / "journal.json"),
                        "--state-dir", str(trial_dir / "state"), "--log-format", "json"],
                       trial_dir, service)
    finally:
        service.reset()


def http_probe(name: str, url: str) -> dict[str, Any]:
    return {"type": "probe", "name": name, "tolerance": 200,
            "provider": {"type": "http", "url": url, "timeout": 2}}


def peer_experiment(service: Service, duration: float) -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "title": "bench-footprint",
        "description": "four safeguard probes at 4 Hz while the method pauses",
        "steady-state-hypothesis": {"title": "service answers",
                                    "probes": [http_probe("ssh", service.url("/ssh"))]},
        # a method needs an activity: one request, then the pause that makes the run's length
        "method": [{**http_probe("hold", service.url("/hold")), "pauses": {"after": duration}}],
        "controls": [{
            "name": "safeguard",
            "provider": {"type": "python", "module": "chaosaddons.controls.safeguards",
                         "arguments": {"probes": [
                             {**http_probe(f"p{i + 1}", service.url(f"/p{i + 1}")),
                              "frequency": INTERVAL} for i in range(PROBES)]}},
        }],
    }


def run_peer(ctx: Ctx, service: Service, duration: float, trial_dir: Path) -> Usage:
    trial_dir.mkdir(parents=True)
    exp = trial_dir / "experiment.json"
    exp.write_text(json.dumps(peer_experiment(service, duration), indent=1))
    settings = trial_dir / "settings.yaml"
    settings.write_text("{}\n")  # never the user's ~/.chaostoolkit/settings.yaml
    try:
        usage = measure([ctx.ctk, "--no-version-check", "--settings", str(settings),
                         "--log-file", str(trial_dir / "ctk.log"), "run", str(exp),
                         "--journal-path", str(trial_dir / "journal.json")],
                        trial_dir, service)
    finally:
        service.reset()
    status = json.loads((trial_dir / "journal.json").read_text()).get("status")
    if status != "completed":
        raise RuntimeError(f"Chaos Toolkit run in {trial_dir} ended {status}, not completed")
    return usage


def _rate(usages: list[Usage], duration: float) -> float:
    """Probe requests per second (the four probes' paths only), averaged over trials."""
    probe_paths = {f"/p{i + 1}" for i in range(PROBES)}
    total = sum(n for u in usages for path, n in u.requests.items() if path in probe_paths)
    return total / len(usages) / duration


def run(ctx: Ctx) -> list[Figure]:
    duration = 10.0 if ctx.quick else 60.0
    n = ctx.trials(3, quick=1)
    base = ctx.workdir / BENCH
    ours: list[Usage] = []
    peer: list[Usage] = []
    # the same experiments with a 0 s length: what start-up and exit alone cost
    ours0: list[Usage] = []
    peer0: list[Usage] = []
    with Service() as service:
        for i in range(n):
            # interleaved, alternating who goes first, so drifting machine load hits both
            order = ("ours", "peer") if i % 2 == 0 else ("peer", "ours")
            for who in order:
                if who == "ours":
                    ours.append(run_ours(ctx, service, duration, base / f"ours-{i}"))
                    ours0.append(run_ours(ctx, service, 0.0, base / f"ours-{i}-0s"))
                else:
                    peer.append(run_peer(ctx, service, duration, base / f"peer-{i}"))
                    peer0.append(run_peer(ctx, service, 0.0, base / f"peer-{i}-0s"))
            print(f"   trial {i + 1}/{n}: ours {ours[-1].cpu_s:.2f} CPU s "
                  f"{ours[-1].rss_mib:.0f} MiB, peer {peer[-1].cpu_s:.2f} CPU s "
                  f"{peer[-1].rss_mib:.0f} MiB", flush=True)
    ours_rate, peer_rate = _rate(ours, duration), _rate(peer, duration)
    steady = {who: round((statistics.median(u.cpu_s for u in full)
                          - statistics.median(u.cpu_s for u in zero)) / duration * 1000, 1)
              for who, full, zero in (("ours", ours, ours0), ("peer", peer, peer0))}
    extra: dict[str, Any] = {
        "duration_s": duration,
        "probe_requests_per_s": {"ours": round(ours_rate, 2), "peer": round(peer_rate, 2),
                                 "nominal": PROBES / INTERVAL},
        "cpu_ms_per_s_after_startup": steady,
        "startup_rss_mib": {"ours": [round(u.rss_mib, 1) for u in ours0],
                            "peer": [round(u.rss_mib, 1) for u in peer0]},
        "wall_s": {"ours": [round(u.wall_s, 2) for u in ours],
                   "peer": [round(u.wall_s, 2) for u in peer]},
        "descendants": {"ours": sorted({d for u in ours + ours0 for d in u.descendants}),
                        "peer": sorted({d for u in peer + peer0 for d in u.descendants})},
    }
    notes = (f"{PROBES} HTTP probes every {INTERVAL * 1000:g} ms for {duration:g} s, no breach; "
             "rusage from os.wait4 on the runner process, start-up included. Without start-up "
             f"(median of the run minus median of a 0 s run) ours spends {steady['ours']:g} CPU "
             f"ms per second, the peer {steady['peer']:g}. Differences: the peer also runs its "
             "one-probe steady-state hypothesis before and after the method and one method probe "
             "(3 requests), and its safeguard 'frequency' is a sleep after each probe, not a "
             f"fixed rate: it made {peer_rate:.1f} probe requests/s against ours "
             f"{ours_rate:.1f} (nominal {PROBES / INTERVAL:g}). Descendants seen: ours "
             f"{len(extra['descendants']['ours'])}, peer {len(extra['descendants']['peer'])} "
             "(listed in extra).")
    return [
        Figure(bench=BENCH, name=f"CPU seconds per {duration:g} s run", unit="s",
               ours=[u.cpu_s for u in ours], peer=[u.cpu_s for u in peer], peer_name=PEER,
               target_text="report", notes=notes, extra=extra),
        Figure(bench=BENCH, name="peak RSS", unit="MiB",
               ours=[u.rss_mib for u in ours], peer=[u.rss_mib for u in peer], peer_name=PEER,
               target_text="report", notes=notes, extra=extra),
        Figure(bench=BENCH, name="CPU seconds of a 0 s run (start-up and exit)", unit="s",
               ours=[u.cpu_s for u in ours0], peer=[u.cpu_s for u in peer0], peer_name=PEER,
               target_text="report",
               notes="the same two experiments with a 0 s baseline / pause: interpreter "
                     "start-up, imports, validation, one round of probes at most, exit.",
               extra={"rss_mib": extra["startup_rss_mib"]}),
    ]
