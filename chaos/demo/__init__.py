"""The demo: a small HTTP service and a supervisor that restarts it, for the example experiments."""
