"""CLI start-up: wall time of `--help` and of `validate` on the same small experiment, vs CTK.

Each trial starts a fresh process, as a person or a CI step does. Trials interleave ours and the
peer in a shuffled order, after one untimed warm-up each (so both read their files from the page
cache). Chaos Toolkit gets ``--no-version-check --no-log-file``: without them it looks for a newer
release over the network and writes chaostoolkit.log, which would only slow it down here.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

from common import Ctx, Figure

OURS_EXPERIMENT = """\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: startup}
spec:
  target: {platform: local}
  baseline: 1s
  recovery: 1s
  probes:
    - name: up
      interval: 250ms
      http: {url: "http://127.0.0.1:9/", timeout: 1s}
  slos:
    - {name: available, probe: up, successRate: ">= 99%", window: 5s}
  faults:
    - name: pause
      processPause: {target: {pidfile: /tmp/startup.pid}}
      at: 1s
      duration: 2s
  rollbacks:
    - name: note
      command: {argv: ["true"]}
"""

#: The same content in Chaos Toolkit's format: one HTTP probe, one action, one rollback.
CTK_EXPERIMENT = {
    "version": "1.0.0",
    "title": "startup",
    "description": "one probe, one action, one rollback",
    "steady-state-hypothesis": {
        "title": "service answers",
        "probes": [{"type": "probe", "name": "up", "tolerance": 200,
                    "provider": {"type": "http", "url": "http://127.0.0.1:9/", "timeout": 1}}],
    },
    "method": [{"type": "action", "name": "pause",
                "provider": {"type": "process", "path": "kill",
                             "arguments": "-STOP 999999"}}],
    "rollbacks": [{"type": "action", "name": "note",
                   "provider": {"type": "process", "path": "true"}}],
}


def _time(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}"
                           f"{done.stderr}")
    return took * 1000


def run(ctx: Ctx) -> list[Figure]:
    work = ctx.workdir / "startup"
    work.mkdir()
    ours_file = work / "startup.yaml"
    ours_file.write_text(OURS_EXPERIMENT)
    ctk_file = work / "startup.json"
    ctk_file.write_text(json.dumps(CTK_EXPERIMENT, indent=1))
    ctk = [ctx.ctk, "--no-version-check", "--no-log-file"]
    commands = {
        ("help", "ours"): [ctx.chaos, "--help"],
        ("help", "peer"): [*ctk, "--help"],
        ("validate", "ours"): [ctx.chaos, "validate", str(ours_file)],
        ("validate", "peer"): [*ctk, "validate", str(ctk_file)],
    }
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in commands}
    for argv in commands.values():
        _time(argv, work)  # warm-up, untimed
    rng = random.Random(1)
    for _ in range(ctx.trials(20)):
        order = list(commands)
        rng.shuffle(order)
        for key in order:
            samples[key].append(_time(commands[key], work))

    def figure(what: str, name: str) -> Figure:
        return Figure(bench="startup", name=name, unit="ms", ours=samples[(what, "ours")],
                      peer=samples[(what, "peer")], peer_name="Chaos Toolkit 1.19",
                      target_text="<= peer", target=lambda o, p: o <= p)

    return [figure("help", "`chaos --help`"),
            figure("validate", "`chaos validate` a small experiment")]
