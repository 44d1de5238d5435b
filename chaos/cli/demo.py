"""``chaos demo``: start the demo service, run a demo experiment against it, stop the service."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from chaos.cli.runner import RunArgs, execute
from chaos.demo.launch import demo_env, find_experiments_dir, free_port, port_free, start_demo
from chaos.errors import InvalidInput

DEMOS = {
    "latency": ("demo-latency.yaml", 3, "the latency SLO breaks and the guard aborts (exit 3)"),
    "kill": (
        "demo-process-kill.yaml", 0, "the supervisor restarts the service; SLOs hold (exit 0)"
    ),
    "cpu": ("demo-cpu-stress.yaml", 0, "the service keeps its SLOs under CPU stress (exit 0)"),
}


def run_demo(name: str) -> int:
    if name not in DEMOS:
        raise InvalidInput(f"no demo called '{name}'; choose one of: {', '.join(DEMOS)}")
    file, expected, story = DEMOS[name]
    experiment = find_experiments_dir() / file
    port = 18080 if port_free(18080) else free_port()
    proxy_port = 18081 if port_free(18081) else free_port()
    state = Path(tempfile.mkdtemp(prefix="chaos-demo-"))
    os.environ.update(demo_env(port, proxy_port, state))
    journal = Path(tempfile.gettempdir()) / f"chaos-demo-{name}.json"
    print(f"demo '{name}': {story}")
    print(f"starting the demo service on 127.0.0.1:{port} (supervised; pidfiles in {state})")
    service = start_demo(port, state)
    try:
        code = execute(RunArgs(experiment=experiment, journal=journal))
    finally:
        service.stop()
    verdict = "as expected" if code == expected else f"expected exit {expected}"
    print(f"demo finished with exit code {code} ({verdict})")
    return code
