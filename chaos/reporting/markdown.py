"""A run record as Markdown, compact enough to post as a pull-request comment.

A verdict line (status word and exit code, no emoji), the message and the abort reason, then one
table each for SLOs, faults and rollbacks. Long cells are shortened, so a normal run stays well
under 60 lines. The small formatting helpers here are shared with the JUnit and HTML renderers.

Every text that came from the run (probe details are chosen by the server a probe talks to,
journals given to ``chaos report`` by anyone) is escaped: no raw HTML, link, image, emphasis
or autolink can render, and control characters (ESC, BEL, ...) are shown as ``\\x1b``
(:func:`visible`), because the Markdown is posted to pull requests and printed to terminals.
"""

from __future__ import annotations

import datetime as dt
import re

from chaos.journal.outcome import EXIT_MEANINGS, ExitCode, outcome_of
from chaos.journal.record import FaultRecord, RunRecord, SloRecord
from chaos.objectives import format_observed

_MAX_CELL = 60
_MAX_ERRORS = 5


# ------------------------------------------------------------------------------ shared helpers


def status_word(record: RunRecord) -> str:
    """PASSED, ABORTED, REVERT FAILED, ...: the word the run's outcome decided."""
    return outcome_of(record).verdict


def exit_code_of(record: RunRecord) -> int:
    return int(outcome_of(record).exit_code)


def exit_meaning(code: int) -> str:
    try:
        return EXIT_MEANINGS[ExitCode(code)]
    except ValueError:
        return ""


def format_slo_value(slo: SloRecord, value: float | None) -> str:
    """An observed SLO value in the unit of its objective: 87.5%, 412ms, 3."""
    return format_observed(slo.objective, value)


def effect_text(fault: FaultRecord) -> str:
    """Whether the fault's effect was seen on the target, in words."""
    if fault.not_in_effect:
        return f"NOT IN EFFECT: {fault.not_in_effect}"
    if fault.verified_at is not None:
        after = f" after {fault.effect_seconds:g}s" if fault.effect_seconds is not None else ""
        return f"in effect{after}"
    if fault.injected_at is not None:
        return "not verified"
    return "-"


def parse_time(iso_ts: str | None) -> dt.datetime | None:
    if not iso_ts:
        return None
    try:
        return dt.datetime.fromisoformat(iso_ts)
    except ValueError:
        return None


def run_seconds(record: RunRecord, iso_ts: str | None) -> float | None:
    """An ISO time of the record as seconds since the run started (``None`` if unknown)."""
    start = parse_time(record.started_at)
    moment = parse_time(iso_ts)
    if start is None or moment is None:
        return None
    return (moment - start).total_seconds()


def fault_outcome(fault: FaultRecord) -> tuple[str, str]:
    """(injected, reverted) in words, for tables."""
    if fault.injected_at is None and fault.inject_error is None:
        return "no", "-"
    injected = "yes" if fault.injected_at is not None else "failed"
    if fault.one_shot:
        return injected, "one-shot"
    if fault.revert_error:
        return injected, "FAILED" if fault.reverted_at is None else "yes (after errors)"
    return injected, "yes" if fault.reverted_at is not None else "NO"


def shorten(text: str, limit: int = _MAX_CELL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _escape_char(char: str) -> str:
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: str) -> str:
    r"""``text`` with every character that is not printable (control characters such as ESC and
    BEL, line breaks, bidirectional overrides, zero-width characters) shown as an escape:
    ``\x1b``, ``\n``, ``\u202e``. For anything printed to a terminal or rendered in a report:
    a probe detail is chosen by whoever answers the probe, and must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def targets_text(targets: list[str], shown: int = 2) -> str:
    if not targets:
        return "-"
    text = ", ".join(targets[:shown])
    if len(targets) > shown:
        text += f" (+{len(targets) - shown} more)"
    return text


# ------------------------------------------------------------------------------ markdown


# Characters with a meaning in (GitHub-flavoured) Markdown, escaped with a backslash. '<' is
# written as &lt; (no HTML tag or <autolink> can start) and '&' as &amp; (no entity); '>' is
# left alone: without a '<' it only means a quote at the start of a line, and no escaped text
# starts a line.
_MD_SPECIAL = re.compile(r"[\\*_\[\]|~#!]")
# GitHub turns these into links by themselves: http://, https://, ftp://, mailto:, xmpp:,
# www. and e-mail addresses. A backslash before ':' or '.' breaks the first ones; an address
# needs a zero-width space after the '@' (GitHub still links a\@b.com), written as the entity
# &#8203; so that the text stays printable (it is also printed to terminals).
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto|xmpp)(:)|\b(www)(\.)|@(?=[a-z0-9])")


def md_text(text: str) -> str:
    """Run text made inert in Markdown: shown as it is, but no HTML, link, image, autolink or
    emphasis renders from it, control characters are visible, and a backtick becomes ' ."""
    text = visible(text).replace("&", "&amp;").replace("<", "&lt;").replace("`", "'")
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)
    return _AUTOLINK.sub(_break_autolink, text)


def _break_autolink(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1) + "\\:"
    if match.group(3):
        return match.group(3) + "\\."
    return "@&#8203;"


def _cell(text: str, limit: int = _MAX_CELL) -> str:
    """One table cell: on one line, no pipes that would split it, not too long, inert."""
    return md_text(shorten(text, limit)) or "-"


def _code(text: str) -> str:
    """A code span: nothing in it renders; on one line, no backtick to end it early."""
    return "`" + visible(" ".join(text.split())).replace("`", "'") + "`"


def _at(record: RunRecord, iso_ts: str | None) -> str:
    seconds = run_seconds(record, iso_ts)
    if seconds is not None:
        return f"+{seconds:.2f}s"
    return md_text(iso_ts[11:23]) if iso_ts else "-"


def render_markdown(record: RunRecord) -> str:
    code = exit_code_of(record)
    lines = [
        f"**{status_word(record)}** (exit {code}): chaos experiment {_code(record.experiment)}, "
        f"run {_code(record.run_id)}, {record.duration or 0:.1f}s",
        "",
    ]
    if record.message:
        lines.append(f"> {md_text(shorten(record.message, 300))}")
        lines.append("")
    if record.abort is not None:
        reason = md_text(shorten(record.abort.reason, 300))
        lines.append(f"**Abort reason** (t={record.abort.t:.2f}s): {reason}")
        lines.append("")
    if record.slos:
        lines += [
            "| SLO | objective | threshold | observed | verdict |",
            "|---|---|---|---|---|",
        ]
        for s in record.slos:
            verdict = f"**{s.verdict}**" if s.verdict == "breached" else _cell(s.verdict)
            if s.breach_phase:
                verdict += f" ({_cell(s.breach_phase)})"
            lines.append(
                f"| {_cell(s.name)} | {_cell(s.objective)} on {_cell(s.probe)} "
                f"| {_cell(s.threshold)} | {_cell(format_slo_value(s, s.observed))} "
                f"| {verdict} |"
            )
        lines.append("")
    if record.faults:
        lines += [
            "| fault | kind | targets | injected | effect | reverted | error |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in record.faults:
            injected, reverted = fault_outcome(f)
            if f.injected_at:
                injected = f"{injected} {_at(record, f.injected_at)}"
            if f.reverted_at and not f.one_shot:
                reverted = f"{reverted} {_at(record, f.reverted_at)}"
            errors = [e for e in (f.inject_error, f.revert_error) if e]
            error = _cell("; ".join(errors), 80) if errors else "-"
            if f.revert_error:
                error = f"**{error}**"
            effect = _cell(effect_text(f), 80)
            if f.not_in_effect:
                effect = f"**{effect}**"
            lines.append(
                f"| {_cell(f.name)} | {_cell(f.kind)} | {_cell(targets_text(f.targets), 50)} "
                f"| {injected} | {effect} | {reverted} | {error} |"
            )
        lines.append("")
    if record.rollbacks:
        lines += ["| rollback | result | detail |", "|---|---|---|"]
        for r in record.rollbacks:
            result = "ok" if r.ok else "**failed**"
            lines.append(f"| {_cell(r.name)} | {result} | {_cell(r.detail, 80)} |")
        lines.append("")
    if record.errors:
        lines.append("**Errors**")
        lines.append("")
        for error in record.errors[:_MAX_ERRORS]:
            lines.append(f"- {md_text(shorten(error, 200))}")
        if len(record.errors) > _MAX_ERRORS:
            lines.append(f"- ... and {len(record.errors) - _MAX_ERRORS} more in the journal")
        lines.append("")
    meaning = exit_meaning(code)
    lines.append(f"<sub>exit {code}: {meaning}</sub>" if meaning else f"<sub>exit {code}</sub>")
    return "\n".join(lines) + "\n"


__all__ = [
    "effect_text",
    "exit_code_of",
    "exit_meaning",
    "fault_outcome",
    "format_slo_value",
    "md_text",
    "parse_time",
    "render_markdown",
    "run_seconds",
    "shorten",
    "status_word",
    "targets_text",
    "visible",
]
