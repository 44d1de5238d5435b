"""The record of a run: what was planned, injected, observed and reverted."""

from chaos.journal.record import (
    AbortRecord,
    FaultRecord,
    RollbackRecord,
    RunRecord,
    SampleRecord,
    SloRecord,
    Status,
    iso,
)

__all__ = [
    "AbortRecord",
    "FaultRecord",
    "RollbackRecord",
    "RunRecord",
    "SampleRecord",
    "SloRecord",
    "Status",
    "iso",
]
