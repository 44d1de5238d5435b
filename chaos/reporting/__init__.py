"""Turning a run record into things people and tools read. Pure functions, no I/O."""

from chaos.reporting.summary import render_plan, render_summary

__all__ = ["render_plan", "render_summary"]
