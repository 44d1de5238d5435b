"""The experiment format: pydantic models, units, and located loading from YAML.

The names below load on first use: the fault and probe kind modules build their parameter
models from :mod:`chaos.model.common`, and importing this package must not pull the whole
format (and the kind registries) in before they are ready.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "Experiment": "chaos.model.experiment",
    "FaultSpec": "chaos.model.experiment",
    "ProbeSpec": "chaos.model.experiment",
    "ProxySpec": "chaos.model.experiment",
    "RollbackSpec": "chaos.model.experiment",
    "SloSpec": "chaos.model.experiment",
    "Spec": "chaos.model.experiment",
    "Threshold": "chaos.model._units",
    "format_duration": "chaos.model._units",
    "parse_duration": "chaos.model._units",
    "load_experiment": "chaos.model.loader",
    "load_experiment_text": "chaos.model.loader",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'chaos.model' has no attribute {name!r}")


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
