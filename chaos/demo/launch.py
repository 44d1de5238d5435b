"""Starting and stopping the supervised demo service from the CLI and from tests."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from chaos.errors import PlatformError


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could bind the port now (TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on the port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoService:
    port: int
    state_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def service_pidfile(self) -> Path:
        return self.state_dir / "service.pid"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_demo(port: int, state_dir: Path, timeout: float = 15.0) -> DemoService:
    """Start the supervisor and wait until the service answers /health."""
    state_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos.demo.supervisor", "--port", str(port),
         "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL,
    )
    service = DemoService(port, state_dir, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PlatformError(f"the demo supervisor exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{service.url}/health", timeout=1) as resp,
        ):
            if resp.status == 200 and service.service_pidfile.exists():
                return service
        time.sleep(0.05)
    service.stop()
    raise PlatformError(f"the demo service did not answer on port {port} within {timeout:g}s")


def find_experiments_dir() -> Path:
    """experiments/ in the current folder, else next to the package (a source checkout)."""
    for candidate in (Path.cwd() / "experiments", Path(__file__).resolve().parents[2] /
                      "experiments"):
        if candidate.is_dir():
            return candidate
    raise PlatformError("cannot find the experiments/ folder; run from the repository root")


def demo_env(port: int, proxy_port: int, state_dir: Path) -> dict[str, str]:
    return {
        "CHAOS_DEMO_PORT": str(port),
        "CHAOS_DEMO_PROXY_PORT": str(proxy_port),
        "CHAOS_DEMO_STATE": str(state_dir),
        "CHAOS_DEMO_PYTHON": sys.executable,
    }


__all__ = [
    "DemoService",
    "demo_env",
    "find_experiments_dir",
    "free_port",
    "listening",
    "port_free",
    "start_demo",
]
