"""No fault left behind, measured: kill the runner at random moments and count what survives.

    python bench/sigkill_survival.py [--trials 50] [--seed N]
                                     [--modes recover,expiry,SIGTERM,SIGINT]

For each mode it runs N trials of an experiment with every local fault kind (pause, proxy
latency, connection reset, CPU stress, process kill), sends the signal at a uniformly random
moment from start-up to after the last revert, and checks the machine afterwards:
  recover  SIGKILL, then `chaos recover`: zero faults may remain
  expiry   SIGKILL, no recover: zero faults may remain after duration + grace
  SIGTERM / SIGINT: exit 130, every fault reverted, rollbacks run, journal complete
Prints a table and writes bench/results/sigkill_survival.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "survival"))

from harness import Harness, random_delay  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--modes", default="recover,expiry,SIGTERM,SIGINT")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: dict[str, dict[str, object]] = {}
    failures: list[str] = []
    print(f"seed {args.seed}, {args.trials} trials per mode")
    print(f"{'mode':<9} {'trials':>6} {'mid-fault':>9} {'outstanding':>11} {'left':>5} "
          f"{'clean':>6}  seconds")
    for mode in args.modes.split(","):
        started = time.monotonic()
        clean = mid = outstanding = left = 0
        with tempfile.TemporaryDirectory(prefix=f"chaos-survival-{mode}-") as tmp:
            harness = Harness(Path(tmp))
            try:
                for _ in range(args.trials):
                    trial = harness.trial(mode, random_delay(rng))
                    clean += trial.ok
                    left += len(trial.leftovers)
                    outstanding += trial.outstanding_at_kill
                    mid += 1.2 < trial.delay < 1.2 + 4.0
                    if not trial.ok:
                        failures.append(f"{mode} at {trial.delay:.2f}s: {trial.leftovers}")
                        print("  LEFT BEHIND:", failures[-1], flush=True)
            finally:
                harness.close()
        seconds = time.monotonic() - started
        results[mode] = {"trials": args.trials, "mid_fault": mid, "outstanding_found": outstanding,
                         "leftovers": left, "clean": clean, "seconds": round(seconds, 1)}
        print(f"{mode:<9} {args.trials:>6} {mid:>9} {outstanding:>11} {left:>5} {clean:>6}  "
              f"{seconds:.0f}")
    for failure in failures:
        print("LEFT BEHIND:", failure)
    out = ROOT / "bench" / "results" / "sigkill_survival.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seed": args.seed, "machine": platform.platform(),
                               "python": platform.python_version(), "results": results},
                              indent=2))
    print(f"written {out.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
