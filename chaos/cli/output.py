"""Logging and live progress for the CLI.

structlog renders human console lines on a terminal and JSON lines otherwise (or with
``--log-format json``); every line of a run carries ``run_id``. On a terminal a status line
(phase, elapsed, active faults, last SLO values) is redrawn under the log; in CI it is not drawn.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:  # only for annotations: the models are loaded by whoever builds an observer
    from chaos.model.experiment import Experiment

_QUIET_EVENTS = {"sample"}


def _shown(value: Any) -> Any:
    """``value`` with every string in it made safe for a terminal (chaos.reporting.markdown
    .visible: ESC, BEL, line breaks and bidi overrides shown as escapes). A probe detail is
    written by whoever answers the probe, and must not drive the operator's terminal or forge a
    log line."""
    from chaos.reporting.markdown import visible

    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {_shown(k): _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    return value


def _terminal_safe(_logger: Any, _method: str, event: Any) -> Any:
    return {key: _shown(value) for key, value in event.items()}


def configure_logging(fmt: str, verbose: bool, stream: TextIO | None = None) -> bool:
    """Configure structlog; return True when console (human) rendering is used."""
    out = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            # People at a terminal read local wall time; machines get ISO 8601 UTC.
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False) if console
            else structlog.processors.TimeStamper(fmt="iso", utc=True),
            # JSON escapes control characters itself; console lines are printed as they are.
            *([_terminal_safe] if console else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    return console


class LiveLine:
    """A single status line at the bottom of a terminal, cleared before each log line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.text = ""
        self._last = 0.0

    def clear(self) -> None:
        if self.text:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def draw(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            self.text = text
            return
        self._last = now
        self.text = text
        self.stream.write("\r\x1b[2K" + text[: 200])
        self.stream.flush()

    def redraw(self) -> None:
        if self.text:
            self.stream.write(self.text[:200])
            self.stream.flush()


class CliObserver:
    """Turns engine events into log lines and, on a terminal, a live status line."""

    def __init__(self, experiment: Experiment, live: LiveLine | None) -> None:
        self.log = structlog.get_logger("chaos")
        self.experiment = experiment
        self.live = live
        self.phase = "preflight"
        self.started = time.monotonic()
        self.active: list[str] = []
        self.slo_values: dict[str, str] = {}
        self.last_phase_t = 0.0

    def event(self, name: str, /, **fields: Any) -> None:
        if name == "phase":
            self.phase = str(fields["phase"])
        elif name == "injected":
            self.active.append(str(fields["fault"]))
        elif name in ("reverted", "revert_failed"):
            if fields["fault"] in self.active:
                self.active.remove(str(fields["fault"]))
        elif name == "slo_breach":
            self.slo_values[str(fields["slo"])] = f"{fields['observed']}!"
        if name in _QUIET_EVENTS:
            self._sample(fields)
            return
        if self.live:
            self.live.clear()
        level = "warning" if name in (
            "slo_breach", "inject_failed", "revert_failed", "interrupt", "interrupt_again",
            "max_duration", "preflight_failed", "error", "not_in_effect",
            "platform_lost") else "info"
        if name == "rollback" and not fields.get("ok"):
            level = "warning"
        getattr(self.log, level)(name, **fields)
        if self.live:
            self.live.redraw()
            self._status(force=True)

    def _sample(self, fields: dict[str, Any]) -> None:
        self.slo_values.update(fields.get("slos") or {})
        self.log.debug("sample", **fields)
        if self.live:
            self._status()

    def _status(self, force: bool = False) -> None:
        assert self.live is not None
        elapsed = time.monotonic() - self.started
        active = ",".join(self.active) or "none"
        slos = " ".join(f"{k}={v}" for k, v in self.slo_values.items())
        status = f"[{self.phase} {elapsed:5.1f}s] active faults: {active}  {slos}"
        self.live.draw(_shown(status), force)

    def close(self) -> None:
        if self.live:
            self.live.clear()
            self.live.text = ""
