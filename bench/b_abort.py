"""Time to abort: from the instant the service starts failing to the instant the fault is reverted.

Both runners hold the same real fault (SIGSTOP on a dummy ``sleep`` process, held 30 s) while
probing a loopback service over HTTP; ours aborts through an SLO that breaks on the first failed
sample, Chaos Toolkit through the safeguards control of chaostoolkit-addons (a repeating http
probe with ``tolerance: 200``) and ``--rollback-strategy=always``. The benchmark watches the dummy
process and, once it is stopped, makes the service fail at a uniformly random instant 2-4 s later
(a whole number of probe periods wide, so the failure's phase against the probe schedule is
uniform). The figure is revert timestamp - failure instant: ours from the ``reverted`` record of
the write-ahead fault journal, the peer's from its rollback action, which resumes the process and
writes ``time.time()``. Ours and peer trials are interleaved, alternating which goes first.

A second, smaller set of peer trials runs with Chaos Toolkit's default rollback strategy and
records whether its rollback ran at all after the safeguard stopped the experiment.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ROOT, Ctx, Figure
from service import Service

BENCH = "abort"
PEER = "Chaos Toolkit 1.19"
INTERVALS = (0.25, 1.0)
HOLD_S = 30.0                 # how long the fault is held when nothing aborts the run
FAIL_WINDOW = (2.0, 4.0)      # the service fails this long after the fault is seen; 2 s is a
                              # multiple of both intervals, so the phase is uniform for each
RUN_TIMEOUT_S = HOLD_S + 60.0
SAFEGUARD = "service-healthy"


class Dummy:
    """The fault's target: a ``sleep`` that does nothing, so pausing it is real and harmless."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        self.pid = self.proc.pid

    def state(self) -> str:
        """The process state letter from /proc (``T`` when stopped)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return "?"
        return stat.rsplit(")", 1)[1].split()[0]

    def close(self) -> None:
        # SIGCONT first: a runner that did not revert (the peer's default strategy) left it stopped
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                break
        self.proc.wait()


class FailWhenPaused:
    """Watches the dummy; once it is stopped, makes the service fail at a random later instant."""

    def __init__(self, dummy: Dummy, service: Service, rng: random.Random) -> None:
        self.paused_at: float | None = None
        self._delay = rng.uniform(*FAIL_WINDOW)
        self._stop = threading.Event()
        self._dummy, self._service = dummy, service
        self._thread = threading.Thread(target=self._watch, daemon=True, name="fail-when-paused")
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            if self._dummy.state() == "T":
                self.paused_at = time.time()
                self._service.fail_at(self.paused_at + self._delay)
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Trial:
    runner: str
    interval: float
    ms: float | None              # failure instant -> revert; None when nothing was reverted
    detail: dict[str, Any]


def _iso_to_epoch(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


# ------------------------------------------------------------------------------------- ours

def ours_experiment(url: str, pid: int, interval: float) -> dict[str, Any]:
    return {
        "apiVersion": "chaos/v1",
        "kind": "Experiment",
        "metadata": {"name": "bench-abort"},
        "spec": {
            "target": {"platform": "local"},
            "baseline": "1s",
            "recovery": "1s",
            "probes": [{"name": "api", "interval": f"{interval * 1000:g}ms",
                        "http": {"url": url, "timeout": "2s", "expect": {"status": [200]}}}],
            # breaks on the first failed sample, like the peer's safeguard tolerance
            "slos": [{"name": "up", "probe": "api", "consecutiveFailures": "< 1",
                      "abortAfter": 1}],
            "faults": [{"name": "pause-dummy", "processPause": {"target": {"pid": pid}},
                        "at": "0s", "duration": f"{HOLD_S:g}s"}],
            # a rollback, so "did the rollbacks run after the abort" is checked for ours too
            "rollbacks": [{"name": "noop", "command": {"argv": ["true"]}}],
            "limits": {"maxDuration": "2m", "maxProcesses": 1},
        },
    }


def run_ours(ctx: Ctx, service: Service, interval: float, rng: random.Random,
             trial_dir: Path) -> Trial:
    trial_dir.mkdir(parents=True)
    dummy = Dummy()
    try:
        exp = trial_dir / "experiment.yaml"  # JSON is YAML
        exp.write_text(json.dumps(ours_experiment(service.url("/abort"), dummy.pid, interval)))
        journal, state = trial_dir / "journal.json", trial_dir / "state"
        watcher = FailWhenPaused(dummy, service, rng)
        with (trial_dir / "stdout").open("wb") as out, (trial_dir / "stderr").open("wb") as err:
            rc = subprocess.run([ctx.chaos, "run", str(exp), "--journal", str(journal),
                                 "--state-dir", str(state), "--log-format", "json"],
                                check=False, stdout=out, stderr=err,
                                timeout=RUN_TIMEOUT_S, cwd=trial_dir).returncode
        watcher.close()
        failed_at = service.deadline
        where = f"ours trial in {trial_dir}"
        if watcher.paused_at is None:
            raise RuntimeError(f"{where}: the dummy was never paused (exit {rc}):\n"
                               f"{_tail(trial_dir / 'stderr')}")
        record = json.loads(journal.read_text())
        abort = record.get("abort") or {}
        if rc != 3 or abort.get("slo") != "up":
            raise RuntimeError(f"{where}: expected exit 3, aborted by SLO 'up'; got exit {rc}, "
                               f"status {record.get('status')}, abort {abort}:\n"
                               f"{_tail(trial_dir / 'stderr')}")
        wal = [json.loads(line) for p in (state / "runs").glob("*.jsonl")
               for line in p.read_text().splitlines() if line.strip()]
        reverted = [r for r in wal if r.get("type") == "reverted"]
        if len(reverted) != 1:
            raise RuntimeError(f"{where}: expected one 'reverted' journal record, got {reverted}")
        reverted_at = _iso_to_epoch(reverted[0]["time"])
        if reverted_at < failed_at:
            raise RuntimeError(f"{where}: reverted before the service failed")
        rollbacks_ok = bool(record.get("rollbacks")) and all(r["ok"] for r in record["rollbacks"])
        return Trial("ours", interval, (reverted_at - failed_at) * 1000, {
            "abort_detected_ms": (_iso_to_epoch(abort["at"]) - failed_at) * 1000,
            "rollbacks_ran": rollbacks_ok,
            "failed_samples_served": service.failures_served,
        })
    finally:
        dummy.close()
        service.reset()


# ------------------------------------------------------------------------------------- peer

def http_probe(name: str, url: str) -> dict[str, Any]:
    return {"type": "probe", "name": name, "tolerance": 200,
            "provider": {"type": "http", "url": url, "timeout": 2}}


def peer_experiment(url: str, pid: int, interval: float, stamp: Path) -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "title": "bench-abort",
        "description": "pause a dummy process; the safeguard stops the run when the service fails",
        "steady-state-hypothesis": {"title": "service answers",
                                    "probes": [http_probe("service-ok", url)]},
        "method": [{
            "type": "action", "name": "pause-dummy",
            "provider": {"type": "python", "module": "service", "func": "ctk_pause",
                         "arguments": {"pid": pid}},
            "pauses": {"after": HOLD_S},   # the fault is held by pausing after injecting it
        }],
        "rollbacks": [{
            "type": "action", "name": "resume-dummy",
            "provider": {"type": "python", "module": "service", "func": "ctk_resume",
                         "arguments": {"pid": pid, "stamp": str(stamp)}},
        }],
        "controls": [{
            "name": "safeguard",
            "provider": {"type": "python", "module": "chaosaddons.controls.safeguards",
                         "arguments": {"probes": [
                             {**http_probe(SAFEGUARD, url), "frequency": interval}]}},
        }],
    }


def peer_command(ctx: Ctx, trial_dir: Path, exp: Path, strategy: str | None) -> list[str]:
    settings = trial_dir / "settings.yaml"
    settings.write_text("{}\n")  # never the user's ~/.chaostoolkit/settings.yaml
    argv = [ctx.ctk, "--no-version-check", "--settings", str(settings),
            "--log-file", str(trial_dir / "ctk.log"), "run", str(exp),
            "--journal-path", str(trial_dir / "journal.json")]
    if strategy:
        argv.append(f"--rollback-strategy={strategy}")
    return argv


def run_peer(ctx: Ctx, service: Service, interval: float, rng: random.Random, trial_dir: Path,
             strategy: str | None = "always") -> Trial:
    trial_dir.mkdir(parents=True)
    dummy = Dummy()
    try:
        stamp = trial_dir / "reverted_at"
        exp = trial_dir / "experiment.json"
        exp.write_text(json.dumps(peer_experiment(service.url("/abort"), dummy.pid, interval,
                                                  stamp), indent=1))
        # the rollback and the fault are functions in bench/service.py (stdlib only)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
        watcher = FailWhenPaused(dummy, service, rng)
        with (trial_dir / "stdout").open("wb") as out, (trial_dir / "stderr").open("wb") as err:
            rc = subprocess.run(peer_command(ctx, trial_dir, exp, strategy), check=False,
                                stdout=out, stderr=err, timeout=RUN_TIMEOUT_S,
                                cwd=trial_dir, env=env).returncode
        watcher.close()
        failed_at = service.deadline
        where = f"Chaos Toolkit trial in {trial_dir}"
        if watcher.paused_at is None:
            raise RuntimeError(f"{where}: the dummy was never paused (exit {rc}):\n"
                               f"{_tail(trial_dir / 'ctk.log')}")
        status = json.loads((trial_dir / "journal.json").read_text()).get("status")
        log = (trial_dir / "ctk.log").read_text(errors="replace")
        triggered = f"Safeguard '{SAFEGUARD}' triggered the end of the experiment" in log
        # only trials the safeguard stopped count; anything else is a broken trial
        if status != "interrupted" or not triggered or rc != 1:
            raise RuntimeError(f"{where}: expected the safeguard to interrupt the run (status "
                               f"interrupted, exit 1); got exit {rc}, status {status}, "
                               f"safeguard triggered: {triggered}:\n{_tail(trial_dir / 'ctk.log')}")
        rolled_back = stamp.exists()
        if strategy == "always" and not rolled_back:
            raise RuntimeError(f"{where}: the rollback did not run with strategy 'always'")
        ms = None
        if rolled_back:
            reverted_at = float(stamp.read_text())
            if reverted_at < failed_at:
                raise RuntimeError(f"{where}: reverted before the service failed")
            ms = (reverted_at - failed_at) * 1000
        return Trial("peer", interval, ms, {
            "rolled_back": rolled_back,
            "left_paused": dummy.state() == "T",
            "failed_samples_served": service.failures_served,
        })
    finally:
        dummy.close()
        service.reset()


# ------------------------------------------------------------------------------------- bench

def run(ctx: Ctx) -> list[Figure]:
    seed = int(time.time())
    rng = random.Random(seed)
    n = ctx.trials(20)
    base = ctx.workdir / BENCH
    figures: list[Figure] = []
    ours_trials: list[Trial] = []
    with Service() as service:
        for interval in INTERVALS:
            ours: list[Trial] = []
            peer: list[Trial] = []
            for i in range(n):
                # interleaved, alternating who goes first, so drifting machine load hits both
                first_ours = i % 2 == 0
                for who in ("ours", "peer") if first_ours else ("peer", "ours"):
                    trial_dir = base / f"{who}-{interval:g}s-{i:02d}"
                    if who == "ours":
                        ours.append(run_ours(ctx, service, interval, rng, trial_dir))
                    else:
                        peer.append(run_peer(ctx, service, interval, rng, trial_dir))
                print(f"   {interval:g}s trial {i + 1}/{n}: ours {ours[-1].ms:.0f} ms, "
                      f"peer {peer[-1].ms:.0f} ms", flush=True)
            ours_trials += ours
            label = f"{interval * 1000:g} ms" if interval < 1 else f"{interval:g} s"
            detect = sorted(t.detail["abort_detected_ms"] for t in ours)
            figures.append(Figure(
                bench=BENCH, name=f"time to abort, probe every {label}", unit="ms",
                ours=[t.ms for t in ours if t.ms is not None],
                peer=[t.ms for t in peer if t.ms is not None], peer_name=PEER,
                target_text="<= 0.5x peer", target=lambda o, p: o <= 0.5 * p,
                notes=(f"service fails at a uniformly random instant {FAIL_WINDOW[0]:g}-"
                       f"{FAIL_WINDOW[1]:g} s after the fault is seen; the figure runs to the "
                       "revert timestamp (ours: the fault journal's 'reverted' record, ms "
                       "precision; peer: time.time() written by its rollback). Peer: safeguards "
                       f"control, http probe, frequency {interval:g}, "
                       "--rollback-strategy=always."),
                extra={"seed": seed, "interval_s": interval,
                       "ours_abort_detected_ms_median": detect[len(detect) // 2]},
            ))

        # Chaos Toolkit's default rollback strategy: does anything undo the fault after the
        # safeguard stops the run? Ours always reverts; its figure comes from the trials above.
        defaults = [run_peer(ctx, service, INTERVALS[0], rng,
                             base / f"peer-default-{i:02d}", strategy=None)
                    for i in range(ctx.trials(5, quick=1))]
    left_paused = sum(t.detail["left_paused"] for t in defaults)
    figures.append(Figure(
        bench=BENCH, name="rollbacks run after abort, default strategy", unit="fraction",
        ours=[float(t.detail["rollbacks_ran"]) for t in ours_trials],
        peer=[float(t.detail["rolled_back"]) for t in defaults], peer_name=PEER,
        target_text="all (1.0)", target=lambda o, p: o == 1.0,
        notes=("ours: every aborted trial above (fault reverted and the declared rollback ran). "
               "peer: the same experiment without --rollback-strategy; chaoslib's 'default' "
               "strategy skips rollbacks when the run ends 'interrupted', which is how a "
               f"safeguard ends it. {left_paused}/{len(defaults)} peer runs exited with the "
               "dummy process still stopped (the benchmark resumed it)."),
        extra={"peer_trials": len(defaults), "peer_left_fault_active": left_paused},
    ))
    return figures
