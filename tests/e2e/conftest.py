from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.demo.launch import DemoService, demo_env, free_port, start_demo


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[DemoService, dict[str, str]]]:
    """The supervised demo service on free ports, and the env the demo experiments read."""
    port, proxy_port = free_port(), free_port()
    service = start_demo(port, tmp_path / "demo-state")
    env = {**os.environ, **demo_env(port, proxy_port, tmp_path / "demo-state"),
           "XDG_STATE_HOME": str(tmp_path / "xdg-state")}
    try:
        yield service, env
    finally:
        service.stop()
