"""The engine: run state machine, SLO guard and orchestrator. No I/O of its own."""
