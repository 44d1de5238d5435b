"""Probe drivers: HTTP, TCP and command probes implementing the engine's Probe protocol."""

from chaos.probes.command import CommandProbeDriver
from chaos.probes.http import HttpProbeDriver, json_path
from chaos.probes.tcp import TcpProbeDriver

__all__ = ["CommandProbeDriver", "HttpProbeDriver", "TcpProbeDriver", "json_path"]
