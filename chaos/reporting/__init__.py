"""Turning a run record into things people and tools read. Pure functions, no I/O."""

from chaos.reporting.html import render_html
from chaos.reporting.junit import render_junit
from chaos.reporting.markdown import render_markdown
from chaos.reporting.summary import render_plan, render_summary

__all__ = ["render_html", "render_junit", "render_markdown", "render_plan", "render_summary"]
