"""Probe drivers: HTTP, TCP, command and Prometheus probes implementing the engine's Probe
protocol."""

from chaos.probes.command import CommandProbeDriver
from chaos.probes.http import HttpProbeDriver, json_path
from chaos.probes.prometheus import PrometheusProbeDriver, check_prometheus_env
from chaos.probes.tcp import TcpProbeDriver

__all__ = [
    "CommandProbeDriver",
    "HttpProbeDriver",
    "PrometheusProbeDriver",
    "TcpProbeDriver",
    "check_prometheus_env",
    "json_path",
]
