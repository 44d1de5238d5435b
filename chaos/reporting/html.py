"""A run record as one self-contained HTML page: a timeline chart and the tables behind it.

Nothing is loaded from anywhere (no CDN, fonts, scripts or images), so the file can be attached
to a CI run, mailed, or opened offline years later. The timeline is inline SVG: one lane per
probe with its latency over time (scaled to the lane's largest value), failed samples marked in
red, fault windows shaded across all lanes, latency SLO thresholds as dashed lines on their
probe's lane, and the abort moment as a vertical line. Elements carry stable ids and classes
(``#timeline``, ``.probe-lane``, ``.fault-window``, ``.slo-threshold``, ``.abort-marker``) so
tests and stylesheets can find them. All text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape as _html_escape

from chaos.journal.record import FaultRecord, RunRecord, SampleRecord, SloRecord, Status
from chaos.objectives import objective
from chaos.reporting.markdown import (
    effect_text,
    exit_code_of,
    exit_meaning,
    fault_outcome,
    format_slo_value,
    run_seconds,
    shorten,
    status_word,
    visible,
)
from chaos.units import format_duration, threshold_parser


def escape(text: str) -> str:
    r"""HTML-escaped, with control characters shown as ``\x1b``, ``\x07``, ...: a probe detail
    is chosen by a server, and ``chaos report -f html`` without ``-o`` prints to a terminal."""
    return _html_escape(visible(text))


# Chart geometry, in SVG user units (the SVG scales to the page width).
_WIDTH = 1200
_LEFT = 150
_RIGHT = 24
_TOP = 28
_FAULT_ROW = 18
_PHASE_ROW = 20
_LANE = 120
_LANE_GAP = 16
_AXIS = 34
_MAX_TARGETS = 10

_PHASE_COLOURS = {
    "baseline": "#dbeafe",
    "injecting": "#fef3c7",
    "observing": "#fde68a",
    "reverting": "#fecaca",
    "recovering": "#dcfce7",
}

_STATUS_CLASS = {
    Status.PASSED: "ok",
    Status.DEVIATED: "warn",
    Status.ABORTED: "bad",
    Status.INTERRUPTED: "warn",
    Status.ERROR: "bad",
    Status.RUNNING: "warn",
}

_CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #52606d; --line: #d9e2ec;
  --ok: #1b7f3b; --bad: #b42318; --warn: #9a6700; --accent: #1d4ed8; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; background: #f5f7fa; color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1240px; margin: 0 auto; }
header { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 16px; margin: 0 0 10px; }
.verdict { display: inline-block; font-weight: 700; letter-spacing: .04em; padding: 2px 10px;
  border-radius: 4px; border: 2px solid currentColor; margin-right: 8px; }
.verdict.ok { color: var(--ok); background: #e8f5ec; }
.verdict.bad { color: var(--bad); background: #fdecea; }
.verdict.warn { color: var(--warn); background: #fff6dd; }
.meta { color: var(--muted); margin: 6px 0 0; }
.meta code { color: var(--ink); }
.message { margin: 10px 0 0; font-size: 15px; }
.abort { margin: 10px 0 0; padding: 8px 12px; border-left: 4px solid var(--bad);
  background: #fdecea; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px;
  margin-bottom: 16px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  fill: var(--ink); }
svg .small { font-size: 10.5px; fill: var(--muted); }
svg .lane-title { font-weight: 600; font-size: 13px; }
svg .abort-label { fill: var(--bad); font-weight: 700; }
svg .threshold-label { fill: #6d28d9; font-size: 11px; }
svg .fault-label { font-size: 11px; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; color: var(--muted); font-size: 12px;
  margin-top: 8px; }
.legend span::before { content: ""; display: inline-block; width: 18px; height: 10px;
  margin-right: 6px; vertical-align: middle; border: 1px solid transparent; }
.legend .l-latency::before { border-top: 2px solid var(--accent); height: 0; }
.legend .l-fail::before { background: #dc2626; width: 4px; }
.legend .l-fault::before { background: rgba(234, 88, 12, .16); border-color: #ea580c; }
.legend .l-threshold::before { border-top: 2px dashed #7c3aed; height: 0; }
.legend .l-abort::before { background: var(--bad); width: 3px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; background: #f8fafc; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td ul { margin: 0; padding-left: 16px; }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; border: 1px solid currentColor; }
.pill.ok { color: var(--ok); }
.pill.bad { color: var(--bad); }
.pill.warn { color: var(--warn); }
.pill.muted { color: var(--muted); }
.err { color: var(--bad); }
.none { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; text-align: center; }
@media print {
  @page { margin: 12mm; }
  body { background: #fff; color: #000; padding: 0; font-size: 11px; }
  header, section { border: none; border-radius: 0; padding: 0; margin-bottom: 14px;
    background: #fff; }
  .verdict, .abort, th { background: #fff !important; }
  section, table, tr, svg { break-inside: avoid; page-break-inside: avoid; }
}
"""


@dataclass
class _Window:
    fault: FaultRecord
    start: float
    end: float
    reverted: bool


def _fmt_t(seconds: float) -> str:
    return f"{seconds:.2f}s"


def _num(value: float) -> str:
    return f"{value:.1f}"


def _fault_windows(record: RunRecord, end: float) -> list[_Window]:
    windows: list[_Window] = []
    for f in record.faults:
        start = run_seconds(record, f.injected_at)
        if start is None:
            continue
        if f.one_shot:
            windows.append(_Window(f, start, start, True))
            continue
        stop = run_seconds(record, f.reverted_at)
        windows.append(_Window(f, start, stop if stop is not None else end, stop is not None))
    return windows


def _latency_threshold(slo: SloRecord) -> float | None:
    try:
        if objective(slo.objective).unit != "duration":
            return None
    except KeyError:
        return None
    try:
        return threshold_parser("duration")(slo.threshold).value
    except ValueError:
        return None


def _tick_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= 12:
            return float(step)
    return float(math.ceil(span / 12 / 3600) * 3600)


def _latency_label(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f}s"
    return f"{seconds * 1000:.0f}ms"


def _timeline(record: RunRecord) -> str:
    samples_end = max((s.t for ss in record.probes.values() for s in ss), default=0.0)
    end = max(record.duration or 0.0, samples_end, record.abort.t if record.abort else 0.0)
    windows = _fault_windows(record, end)
    end = max([end, *(w.end for w in windows)])
    span = end if end > 0 else 1.0
    plot_w = _WIDTH - _LEFT - _RIGHT

    def x(t: float) -> float:
        return _LEFT + max(0.0, min(t, span)) / span * plot_w

    probes = list(record.probes)
    fault_rows = len(windows)
    phase_y = _TOP + fault_rows * _FAULT_ROW + 6
    lanes_y = phase_y + _PHASE_ROW + 10
    lanes_h = len(probes) * (_LANE + _LANE_GAP) - (_LANE_GAP if probes else 0)
    if not probes:
        lanes_h = 60
    axis_y = lanes_y + lanes_h + 6
    height = axis_y + _AXIS
    chart_bottom = lanes_y + lanes_h

    out: list[str] = [
        f'<svg id="timeline" viewBox="0 0 {_WIDTH} {height}" '
        f'role="img" aria-labelledby="timeline-title">',
        '<title id="timeline-title">Timeline of the run: probe latency, failed samples, '
        "fault windows, SLO thresholds and the abort</title>",
    ]

    # Phases: a strip of coloured segments with their names.
    out.append('<g class="phases">')
    out.append(f'<text class="small" x="{_LEFT - 8}" y="{phase_y + 14}" '
               'text-anchor="end">phases</text>')
    marks = [(str(p.get("phase")), float(p.get("t") or 0.0)) for p in record.phases]
    for i, (name, t0) in enumerate(marks):
        t1 = marks[i + 1][1] if i + 1 < len(marks) else end
        colour = _PHASE_COLOURS.get(name)
        if colour is None or t1 <= t0:
            continue
        x0, x1 = x(t0), x(t1)
        out.append(f'<rect class="phase phase-{escape(name)}" x="{_num(x0)}" y="{phase_y}" '
                   f'width="{_num(x1 - x0)}" height="{_PHASE_ROW}" fill="{colour}">'
                   f"<title>{escape(name)}: {_fmt_t(t0)} to {_fmt_t(t1)}</title></rect>")
        if x1 - x0 > 8 * len(name):
            out.append(f'<text class="small" x="{_num(x0 + 5)}" y="{phase_y + 14}">'
                       f"{escape(name)}</text>")
    out.append("</g>")

    # Fault windows: shaded across every lane, one labelled row each above the phases.
    out.append('<g class="faults">')
    if windows:
        out.append(f'<text class="small" x="{_LEFT - 8}" y="{_TOP + 12}" '
                   'text-anchor="end">faults</text>')
    for row, w in enumerate(windows):
        x0, x1 = x(w.start), x(w.end)
        cls = "fault-window"
        if w.fault.one_shot:
            cls += " one-shot"
            x1 = x0 + 2
        elif not w.reverted:
            cls += " not-reverted"
        stroke = "#b42318" if not w.reverted else "#ea580c"
        dash = ' stroke-dasharray="5 3"' if not w.reverted else ""
        title = escape(
            f"{w.fault.name} ({w.fault.kind}): {_fmt_t(w.start)} to "
            + (_fmt_t(w.end) if w.reverted else "never reverted")
        )
        out.append(
            f'<rect class="{cls}" data-fault="{escape(w.fault.name)}" x="{_num(x0)}" '
            f'y="{_TOP + row * _FAULT_ROW}" width="{_num(max(x1 - x0, 2))}" '
            f'height="{_num(chart_bottom - _TOP - row * _FAULT_ROW)}" '
            f'fill="rgba(234,88,12,0.13)" stroke="{stroke}" stroke-width="1"{dash}>'
            f"<title>{title}</title></rect>"
        )
        label = w.fault.name + ("" if w.reverted else "  (NOT REVERTED)")
        anchor_x = x0 + 4
        anchor = "start"
        if anchor_x + 7 * len(label) > _WIDTH - _RIGHT:
            anchor_x, anchor = x0 - 4, "end"
        out.append(f'<text class="fault-label" x="{_num(anchor_x)}" '
                   f'y="{_TOP + row * _FAULT_ROW + 13}" text-anchor="{anchor}">'
                   f"{escape(label)}</text>")
    out.append("</g>")

    # Probe lanes.
    slos_by_probe: dict[str, list[SloRecord]] = {}
    for slo in record.slos:
        slos_by_probe.setdefault(slo.probe, []).append(slo)
    if not probes:
        out.append(f'<text class="small" x="{_LEFT}" y="{lanes_y + 30}">no probe samples: '
                   "the run ended before the baseline</text>")
    for i, name in enumerate(probes):
        top = lanes_y + i * (_LANE + _LANE_GAP)
        out.append(_lane(name, record.probes[name], slos_by_probe.get(name, []), top, x))

    # Time axis.
    out.append('<g class="axis">')
    out.append(f'<line x1="{_LEFT}" y1="{axis_y}" x2="{_WIDTH - _RIGHT}" y2="{axis_y}" '
               'stroke="#9aa5b1"/>')
    step = _tick_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        tx = x(tick)
        out.append(f'<line x1="{_num(tx)}" y1="{axis_y}" x2="{_num(tx)}" y2="{axis_y + 5}" '
                   'stroke="#9aa5b1"/>')
        out.append(f'<text class="small" x="{_num(tx)}" y="{axis_y + 18}" '
                   f'text-anchor="middle">{tick:g}s</text>')
        tick += step
    out.append(f'<text class="small" x="{_LEFT - 16}" y="{axis_y + 18}" text-anchor="end">'
               "time since start</text>")
    out.append("</g>")

    # The abort, on top of everything.
    if record.abort is not None:
        ax = x(record.abort.t)
        what = record.abort.slo or record.abort.reason
        label = f"abort t={_fmt_t(record.abort.t)}: {shorten(what, 40)}"
        anchor = "end" if ax > _WIDTH / 2 else "start"
        lx = ax - 5 if anchor == "end" else ax + 5
        out.append(
            f'<g class="abort-marker"><line x1="{_num(ax)}" y1="{_TOP - 14}" x2="{_num(ax)}" '
            f'y2="{chart_bottom}" stroke="#b42318" stroke-width="2.5"/>'
            f'<text class="abort-label" x="{_num(lx)}" y="{_TOP - 6}" '
            f'text-anchor="{anchor}">{escape(label)}</text>'
            f"<title>{escape(record.abort.reason)}</title></g>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _lane(name: str, samples: list[SampleRecord], slos: list[SloRecord], top: int,
          x: Callable[[float], float]) -> str:
    thresholds = [(s, v) for s in slos if (v := _latency_threshold(s)) is not None]
    latencies = [s.latency for s in samples if s.latency is not None]
    peak = max([*latencies, *(v for _, v in thresholds)], default=0.0)
    scale = peak * 1.12 if peak > 0 else 0.001
    plot_top = top + 18
    plot_h = _LANE - 18 - 10  # room for the title above and failure ticks below
    base = plot_top + plot_h

    def y(latency: float) -> float:
        return base - latency / scale * plot_h

    ok = sum(1 for s in samples if s.ok)
    out = [f'<g class="probe-lane" data-probe="{escape(name)}">',
           f'<rect x="{_LEFT}" y="{top}" width="{_WIDTH - _LEFT - _RIGHT}" height="{_LANE}" '
           'fill="none" stroke="#d9e2ec"/>',
           f'<text class="lane-title" x="{_LEFT - 8}" y="{top + 16}" text-anchor="end">'
           f"{escape(shorten(name, 20))}</text>",
           f'<text class="small" x="{_LEFT - 8}" y="{top + 32}" text-anchor="end">'
           f"{ok}/{len(samples)} ok</text>",
           f'<line x1="{_LEFT}" y1="{_num(base)}" x2="{_WIDTH - _RIGHT}" y2="{_num(base)}" '
           'stroke="#e4e7eb"/>',
           f'<text class="small" x="{_LEFT + 4}" y="{top + 13}">latency, 0 to '
           f"{_latency_label(scale)}</text>" if latencies
           else f'<text class="small" x="{_LEFT + 4}" y="{top + 13}">no latencies</text>']
    # A polyline per run of samples that have a latency (a gap where one has none).
    runs: list[list[SampleRecord]] = [[]]
    for s in samples:
        if s.latency is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(s)
    for run in runs:
        if not run:
            continue
        points = " ".join(f"{_num(x(s.t))},{_num(y(s.latency or 0.0))}" for s in run)
        out.append(f'<polyline class="latency" points="{points}" fill="none" '
                   'stroke="#1d4ed8" stroke-width="1.6" stroke-linejoin="round"/>')
    for s in samples:
        if s.ok:
            continue
        sx = x(s.t)
        tip = escape(f"{_fmt_t(s.t)} failed ({s.phase}): {s.detail}")
        out.append(f'<rect class="sample-fail" x="{_num(sx - 1.5)}" y="{_num(base + 2)}" '
                   f'width="3" height="8" fill="#dc2626"><title>{tip}</title></rect>')
        if s.latency is not None:
            out.append(f'<circle class="sample-fail" cx="{_num(sx)}" cy="{_num(y(s.latency))}" '
                       f'r="2.6" fill="#dc2626"><title>{tip}</title></circle>')
    for slo, value in thresholds:
        ty = y(value)
        label = f"{slo.name}: {slo.objective} {slo.threshold}"
        out.append(
            f'<g class="slo-threshold" data-slo="{escape(slo.name)}">'
            f'<line x1="{_LEFT}" y1="{_num(ty)}" x2="{_WIDTH - _RIGHT}" y2="{_num(ty)}" '
            'stroke="#7c3aed" stroke-width="1.3" stroke-dasharray="6 4"/>'
            f'<text class="threshold-label" x="{_WIDTH - _RIGHT - 4}" y="{_num(ty - 4)}" '
            f'text-anchor="end">{escape(label)}</text></g>'
        )
    out.append("</g>")
    return "\n".join(part for part in out if part)


# ------------------------------------------------------------------------------ tables


def _pill(text: str, kind: str) -> str:
    return f'<span class="pill {kind}">{escape(text)}</span>'


def _slo_table(record: RunRecord) -> str:
    if not record.slos:
        return '<p class="none">no SLOs</p>'
    rows = []
    for s in record.slos:
        kind = {"passed": "ok", "breached": "bad"}.get(s.verdict, "muted")
        when = s.breach_phase or ("last evaluation" if s.verdict == "breached" else "")
        rows.append(
            "<tr>"
            f"<td>{escape(s.name)}</td><td>{escape(s.probe)}</td>"
            f"<td>{escape(s.objective)}</td><td class=num>{escape(s.threshold)}</td>"
            f"<td class=num>{escape(format_slo_value(s, s.observed))}</td>"
            f"<td>{_pill(s.verdict, kind)}</td><td>{escape(when)}</td>"
            f"<td class=num>{s.breaching_evaluations}/{s.evaluations}</td>"
            f"<td class=num>{escape(format_duration(s.window))}</td>"
            "</tr>"
        )
    return (
        "<table><thead><tr><th>SLO</th><th>probe</th><th>objective</th><th>threshold</th>"
        "<th>observed</th><th>verdict</th><th>breached in</th>"
        "<th>breaching / evaluations</th><th>window</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )


def _at(record: RunRecord, iso_ts: str | None) -> str:
    seconds = run_seconds(record, iso_ts)
    if seconds is None:
        return escape(iso_ts or "-")
    return f'<span title="{escape(iso_ts or "")}">+{seconds:.2f}s</span>'


def _fault_table(record: RunRecord) -> str:
    if not record.faults:
        return '<p class="none">no faults</p>'
    rows = []
    for f in record.faults:
        injected, reverted = fault_outcome(f)
        targets = "".join(f"<li>{escape(t)}</li>" for t in f.targets[:_MAX_TARGETS])
        if len(f.targets) > _MAX_TARGETS:
            targets += f"<li>... and {len(f.targets) - _MAX_TARGETS} more</li>"
        errors = []
        if f.inject_error:
            errors.append(f'<div class="err">inject: {escape(f.inject_error)}</div>')
        if f.revert_error:
            errors.append(f'<div class="err"><b>revert: {escape(f.revert_error)}</b></div>')
        inj_kind = "ok" if injected == "yes" else ("bad" if injected == "failed" else "muted")
        rev_kind = {"yes": "ok", "one-shot": "muted", "-": "muted"}.get(reverted, "bad")
        inj_cell = _pill(injected, inj_kind)
        if f.injected_at:
            inj_cell += " " + _at(record, f.injected_at)
        effect = effect_text(f)
        eff_kind = ("bad" if f.not_in_effect else "ok" if f.verified_at else "muted")
        eff_cell = (_pill(effect.split(":")[0], eff_kind)
                    + (f'<div class="err">{escape(f.not_in_effect)}</div>' if f.not_in_effect
                       else f'<div class="meta">{escape(f.effect or "")}</div>'))
        rev_cell = _pill(reverted, rev_kind)
        if f.reverted_at and not f.one_shot:
            rev_cell += " " + _at(record, f.reverted_at)
        rows.append(
            "<tr>"
            f"<td>{escape(f.name)}</td>"
            f'<td>{escape(f.kind)}<div class="meta">{escape(f.description)}</div></td>'
            f"<td>{'<ul>' + targets + '</ul>' if targets else '-'}</td>"
            f"<td class=num>{inj_cell}</td><td>{eff_cell}</td><td class=num>{rev_cell}</td>"
            f"<td>{''.join(errors) or '-'}</td>"
            "</tr>"
        )
    return (
        "<table><thead><tr><th>fault</th><th>kind</th><th>targets</th><th>injected</th>"
        "<th>effect</th><th>reverted</th><th>errors</th></tr></thead><tbody>" + "".join(rows)
        + "</tbody></table>"
    )


def _probe_table(record: RunRecord) -> str:
    if not record.probes:
        return '<p class="none">no probes</p>'
    rows = []
    for name, samples in record.probes.items():
        ok = sum(1 for s in samples if s.ok)
        lat = sorted(s.latency for s in samples if s.latency is not None)
        median = _latency_label(lat[len(lat) // 2]) if lat else "-"
        peak = _latency_label(lat[-1]) if lat else "-"
        last_bad = next((s for s in reversed(samples) if not s.ok), None)
        bad = (f"{_fmt_t(last_bad.t)}: {shorten(last_bad.detail, 120)}" if last_bad else "-")
        rows.append(
            f"<tr><td>{escape(name)}</td><td class=num>{len(samples)}</td>"
            f"<td class=num>{ok}</td><td class=num>{len(samples) - ok}</td>"
            f"<td class=num>{median}</td><td class=num>{peak}</td><td>{escape(bad)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>probe</th><th>samples</th><th>ok</th><th>failed</th>"
        "<th>median latency</th><th>max latency</th><th>last failure</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )


def _rollback_table(record: RunRecord) -> str:
    if not record.rollbacks:
        return '<p class="none">no rollbacks ran</p>'
    rows = "".join(
        f"<tr><td>{escape(r.name)}</td>"
        f"<td>{_pill('ok', 'ok') if r.ok else _pill('failed', 'bad')}</td>"
        f"<td>{escape(r.detail)}</td><td class=num>{_at(record, r.started_at)}</td></tr>"
        for r in record.rollbacks
    )
    return ("<table><thead><tr><th>rollback</th><th>result</th><th>detail</th><th>started</th>"
            "</tr></thead><tbody>" + rows + "</tbody></table>")


def _errors(record: RunRecord) -> str:
    if not record.errors:
        return '<p class="none">no errors</p>'
    return "<ul>" + "".join(f'<li class="err">{escape(e)}</li>' for e in record.errors) + "</ul>"


def render_html(record: RunRecord) -> str:
    """The run as one self-contained HTML document."""
    code = exit_code_of(record)
    word = status_word(record)
    kind = "bad" if code == 4 else _STATUS_CLASS.get(record.status, "warn")
    title = f"{word}: {record.experiment} (run {record.run_id})"
    meta = [
        f"run <code>{escape(record.run_id)}</code>",
        f"started {escape(record.started_at or '-')}",
        f"duration {record.duration or 0:.2f}s",
        f"exit {code}" + (f": {escape(exit_meaning(code))}" if exit_meaning(code) else ""),
    ]
    if record.experiment_file:
        meta.insert(1, f"file <code>{escape(record.experiment_file)}</code>")
    abort = ""
    if record.abort is not None:
        a = record.abort
        abort = (f'<div class="abort"><b>Aborted at t={_fmt_t(a.t)}</b>: {escape(a.reason)}'
                 + (f" ({escape(a.at)})" if a.at else "") + "</div>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<header>",
        f'<h1><span class="verdict {kind}">{escape(word)}</span>{escape(record.experiment)}</h1>',
        f'<p class="meta">{" &middot; ".join(meta)}</p>',
        f'<p class="message">{escape(record.message)}</p>' if record.message else "",
        abort,
        "</header>",
        '<section><h2>Timeline</h2>',
        _timeline(record),
        '<div class="legend"><span class="l-latency">probe latency</span>'
        '<span class="l-fail">failed sample</span><span class="l-fault">fault active</span>'
        '<span class="l-threshold">SLO latency threshold</span>'
        '<span class="l-abort">abort</span></div>',
        "</section>",
        f"<section><h2>SLO verdicts</h2>{_slo_table(record)}</section>",
        f"<section><h2>Faults</h2>{_fault_table(record)}</section>",
        f"<section><h2>Probes</h2>{_probe_table(record)}</section>",
        f"<section><h2>Rollbacks</h2>{_rollback_table(record)}</section>",
        f"<section><h2>Errors</h2>{_errors(record)}</section>",
        f"<footer>chaos run {escape(record.run_id)} &middot; ended "
        f"{escape(record.ended_at or '-')}</footer>",
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


__all__ = ["render_html"]
