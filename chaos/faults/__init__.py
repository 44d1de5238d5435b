"""Fault kinds: one module each, found through :mod:`chaos.faults.registry`; the contract they
fulfil is :mod:`chaos.faults.contract` (docs/architecture.md: how to add one). Importing this
package loads nothing else: validating an experiment imports the kinds' parameter models only."""
