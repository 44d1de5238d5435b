"""Probe kinds: one module each (http, command, tcp, kubernetes, prometheus), found through
:mod:`chaos.probes.registry`. Each owns its parameter model and the driver that implements the
engine's Probe protocol."""
