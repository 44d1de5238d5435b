"""The experiment format: pydantic models, units, and located loading from YAML."""

from chaos.model._units import Threshold, format_duration, parse_duration
from chaos.model.experiment import (
    Experiment,
    FaultSpec,
    ProbeSpec,
    ProxySpec,
    RollbackSpec,
    SloSpec,
    Spec,
)
from chaos.model.loader import load_experiment, load_experiment_text

__all__ = [
    "Experiment",
    "FaultSpec",
    "ProbeSpec",
    "ProxySpec",
    "RollbackSpec",
    "SloSpec",
    "Spec",
    "Threshold",
    "format_duration",
    "load_experiment",
    "load_experiment_text",
    "parse_duration",
]
