"""Text the runner does not choose cannot drive a terminal or render as HTML or links in a report.

An HTTP probe's detail is what a server answered; errors quote targets and servers; a journal
given to `chaos report` may say anything. The Markdown goes to pull requests (GitHub renders raw
HTML, links, images and bare URLs there), the summary and `chaos plan` to terminals (ESC drives
them), and the HTML report may be printed by `chaos report -f html` too. So: Markdown escapes
everything that could render (checked with a real CommonMark renderer, markdown-it-py), the
summary, the plan and every report show control characters as `\\x1b`, and the HTML escapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from chaos.journal.record import RunRecord
from chaos.model import load_experiment_text
from chaos.reporting import render_html, render_junit, render_markdown, render_summary

HTML_PAYLOAD = "<img src=x onerror=alert(1)>"
LINK_PAYLOAD = "[click](http://evil)"
ESC_PAYLOAD = "\x1b[31m"
BEL_PAYLOAD = "\x07"
EVIL = f"{HTML_PAYLOAD} {LINK_PAYLOAD} {ESC_PAYLOAD}red{BEL_PAYLOAD} ![i](http://evil/i.png)"
MORE = "see www.evil.com or mail x@evil.com, <http://evil> `code` **bold** _it_ ~~s~~ &lt;b&gt;"


def hostile(record: RunRecord) -> RunRecord:
    """``record`` with the payloads in every free-text field a probe, a target or a journal
    can fill: probe details, fault errors and effects, targets, rollbacks, errors, message."""
    probes = {
        name: [dataclasses.replace(s, detail=f"{s.detail} {EVIL}") for s in samples]
        for name, samples in record.probes.items()
    }
    faults = [dataclasses.replace(
        f, inject_error=f"inject {EVIL}", revert_error=f"revert {EVIL} {MORE}",
        not_in_effect=f"no effect {EVIL}", targets=[f"target {EVIL}"],
        description=f"desc {EVIL}", effect=f"effect {EVIL}") for f in record.faults]
    rollbacks = [dataclasses.replace(r, detail=f"rollback {EVIL}") for r in record.rollbacks]
    slos = [dataclasses.replace(s, verdict=f"verdict {EVIL}", breach_phase=f"phase {EVIL}")
            for s in record.slos]
    abort = (dataclasses.replace(record.abort, reason=f"reason {EVIL}")
             if record.abort else None)
    return dataclasses.replace(record, probes=probes, faults=faults, rollbacks=rollbacks, slos=slos,
                               abort=abort, message=f"message {EVIL} {MORE}",
                               errors=[f"error {EVIL}", f"error2 {MORE}"])


def no_control_characters(text: str, allowed: str = "\n") -> None:
    bad = sorted({c for c in text if not c.isprintable() and c not in allowed})
    assert not bad, [hex(ord(c)) for c in bad]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def assert_inert_html(html: str) -> None:
    """No element from the payloads: no image, no link, no event handler attribute."""
    for tag, attrs in tags_of(html):
        assert tag not in ("img", "script", "iframe"), (tag, attrs)
        assert not (tag == "a" and "evil" in str(attrs.get("href"))), attrs
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)


# ------------------------------------------------------------------------------ Markdown


def test_markdown_renders_no_html_link_or_image(aborted_record: RunRecord) -> None:
    md = render_markdown(hostile(aborted_record))
    # rendered by a real CommonMark renderer (with GFM tables and strikethrough)
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md)
    assert_inert_html(html)
    for tag, _ in tags_of(html):
        assert tag not in ("a", "em", "s", "del"), tag  # ours: <strong>, <sub>, <code>
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, as text
    assert "[click](http://evil)" in html
    # GitHub also links bare URLs, www. and addresses by itself: broken up in the source
    assert "http://" not in md and "www." not in md and "x@evil" not in md
    assert "x@&#8203;evil.com" in md  # a zero-width space: GitHub links x\@evil.com


def test_markdown_shows_control_characters(aborted_record: RunRecord) -> None:
    md = render_markdown(hostile(aborted_record))
    no_control_characters(md)
    assert "\\\\x1b\\[31mred\\\\x07" in md  # \x1b[31mred\x07, its backslashes and [ escaped
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "\\x1b[31mred\\x07" in html  # and that is what a reader sees


def test_markdown_tables_keep_their_shape(aborted_record: RunRecord) -> None:
    md = render_markdown(hostile(aborted_record))
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    header_cells = {len(line.replace("\\|", "").split("|")) for line in rows if "---" not in line}
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert html.count("<table>") == 3
    assert len(header_cells) >= 1


@pytest.mark.parametrize("text", [
    HTML_PAYLOAD, LINK_PAYLOAD, "![x](http://e/i.png)", "<http://evil>", "[a][b]\n\n[b]: http://e",
    "http://evil.com/x", "HTTPS://EVIL", "www.evil.com", "a@evil.com", "mailto:a@evil.com",
    "xmpp:a@evil.com", "ftp://evil", "&#60;img src=x&#62;", "&lt;img&gt;", "`x`", "**b** __b__",
    "*i* _i_", "~~s~~", "<!-- c -->", "\\<img>", "\\\\<img>", "line\nbreak", "# heading",
])
def test_md_text_is_inert(text: str) -> None:
    from chaos.reporting.markdown import md_text

    cell = md_text(text)
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(f"x {cell}")
    assert html.startswith("<p>") and html.count("<") == 2, html  # only <p> and </p>
    for scheme in ("http://", "https://", "ftp://", "mailto:", "xmpp:", "www.", "@e"):
        assert scheme not in cell.lower(), cell


# ------------------------------------------------------------------------------ terminal


def test_summary_shows_control_characters(aborted_record: RunRecord, experiment_text: str
                                          ) -> None:
    text = render_summary(hostile(aborted_record), load_experiment_text(experiment_text),
                          journal="run.json")
    no_control_characters(text)
    assert "\\x1b[31mred\\x07" in text
    # a line break inside a value cannot forge a line of the summary
    record = dataclasses.replace(aborted_record, errors=["x\nPASSED (exit 0)"])
    lines = render_summary(record, load_experiment_text(experiment_text)).splitlines()
    assert "error: x\\nPASSED (exit 0)" in lines
    assert "PASSED (exit 0)" not in [line.strip() for line in lines]


def test_visible_escapes_every_non_printable_character() -> None:
    from chaos.reporting.markdown import visible

    assert visible("a\x1b[31mb\x07c\x00\x7f\x9b") == "a\\x1b[31mb\\x07c\\x00\\x7f\\x9b"
    assert visible("tab\there\r\n") == "tab\\there\\r\\n"
    assert visible("rtl\u202eoverride\u200bzw") == "rtl\\u202eoverride\\u200bzw"
    assert visible("plain: ü, 日本, emoji 🙂") == "plain: ü, 日本, emoji 🙂"


def test_plan_shows_a_hostile_command_line_escaped(tmp_path: Path) -> None:
    # A real process whose command line holds ESC and BEL: `chaos plan` prints its target.
    name = "evil\x1b[31mRED\x07"
    proc = subprocess.Popen(["bash", "-c", f'exec -a "{name}" sleep 60'])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            if cmdline.startswith(b"evil"):
                break
            time.sleep(0.02)
        path = tmp_path / "exp.yaml"
        path.write_text(
            "apiVersion: chaos/v1\nkind: Experiment\nmetadata: {name: t}\nspec:\n"
            "  probes: [{name: p, tcp: {host: 127.0.0.1, port: 9}}]\n"
            f"  faults: [{{name: pause, processPause: {{target: {{pid: {proc.pid}}}}}, at: 1s, "
            "duration: 5s}]\n")
        result = subprocess.run([sys.executable, "-m", "chaos", "plan", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        no_control_characters(result.stdout)
        assert "evil\\x1b[31mRED\\x07" in result.stdout, result.stdout
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_run_logs_show_a_hostile_probe_detail_escaped(tmp_path: Path, log_format: str) -> None:
    """A probe's output lands in the log lines (`-v` logs every sample): on a console it is
    shown escaped, and in JSON lines it is JSON-escaped; neither writes ESC or BEL raw."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "apiVersion: chaos/v1\nkind: Experiment\nmetadata: {name: t}\nspec:\n"
        "  baseline: 600ms\n  recovery: 0s\n"
        "  probes:\n"
        "    - {name: p, interval: 200ms,\n"
        "       command: {argv: [sh, -c, \"printf 'x\\\\033[31mRED\\\\007'; exit 3\"]}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "run", str(path), "-v", "--log-format", log_format,
         "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    no_control_characters(result.stderr)
    no_control_characters(result.stdout)
    # console: visible()'s \x1b, quoted by structlog (which doubles the backslash)
    shown = "x1b[31mRED\\\\x07" if log_format == "console" else "\\u001b[31mRED\\u0007"
    assert shown in result.stderr, result.stderr


# ------------------------------------------------------------------------------ HTML and JUnit


def test_html_report_escapes_everything(aborted_record: RunRecord) -> None:
    page = render_html(hostile(aborted_record))
    assert_inert_html(page)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    no_control_characters(page)
    assert "\\x1b[31mred\\x07" in page


def test_junit_keeps_the_payloads_as_text(aborted_record: RunRecord) -> None:
    import xml.etree.ElementTree as ET

    xml = render_junit(hostile(aborted_record))
    ET.fromstring(xml.split("\n", 1)[1])  # still well-formed XML
    assert "<img" not in xml


# ------------------------------------------------------------------------------ the real CLI


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_chaos_report_prints_no_control_characters(aborted_record: RunRecord, tmp_path: Path,
                                                   fmt: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(hostile(aborted_record).to_json())
    assert "\\u001b" in path.read_text()  # the journal holds the ESC (JSON-escaped)
    result = subprocess.run([sys.executable, "-m", "chaos", "report", str(path), "-f", fmt],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    no_control_characters(result.stdout, allowed="\n")
    assert "x1b" in result.stdout
    assert json.loads(path.read_text())["run_id"] == aborted_record.run_id
