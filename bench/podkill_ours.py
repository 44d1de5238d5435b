"""Driver for b_podkill (run with the project's python): plans and injects every podKill fault of
an experiment the way `chaos run` does (KubePlatform.plan_fault, then PodKillFault.inject), and
prints one JSON line: {"seconds": wall time of select + inject, connection setup included}.

    python bench/podkill_ours.py EXPERIMENT.yaml KUBECONFIG
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

# The client library is imported before the clock starts, as the peer's driver does by
# importing chaosk8s first: both then time config loading, connecting and the requests only.
import kubernetes.client  # noqa: F401

from chaos.cli.runner import new_run_id
from chaos.model.loader import load_experiment
from chaos.platform.kubernetes import KubeClient
from chaos.targets.kubernetes import KubePlatform


async def kill(experiment_path: str, kubeconfig: str) -> dict[str, float | int]:
    experiment = load_experiment(experiment_path)

    async def connect() -> KubeClient:
        return await KubeClient.connect(kubeconfig)

    platform = KubePlatform(experiment, new_run_id(), connect=connect)
    try:
        t0 = time.perf_counter()
        faults = [await platform.plan_fault(spec) for spec in experiment.spec.faults]
        for fault in faults:
            await fault.inject()
        seconds = time.perf_counter() - t0
    finally:
        await platform.close()
    pods = sum(len(getattr(f, "pods", [])) for f in faults)
    return {"seconds": seconds, "pods": pods}


def main() -> int:
    experiment_path, kubeconfig = sys.argv[1:3]
    print(json.dumps(asyncio.run(kill(experiment_path, kubeconfig))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
