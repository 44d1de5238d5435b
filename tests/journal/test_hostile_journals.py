"""`chaos report` on crafted journals, through the real CLI: a clear message and exit 2, fast.

A journal is input like any other: a 200,000-deep JSON array raised RecursionError, `1e999`
(infinity) crashed the HTML renderer, a FIFO hung the command and a symlink to /dev/zero read
until memory ran out. Each is now refused on load: only regular files of at most 64 MiB, at most
64 levels deep, every number finite, integers of at most 19 digits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from chaos.journal.load import load_record
from chaos.journal.record import (
    AbortRecord,
    FaultRecord,
    RunRecord,
    SampleRecord,
    SloRecord,
    Status,
)

FAST = 5.0  # seconds, start-up included; the refusals take a fraction of that
FORMATS = ("html", "markdown", "junit")


def journal() -> dict[str, Any]:
    record = RunRecord(
        run_id="r1", experiment="e", status=Status.ABORTED, started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:00:10+00:00", message="aborted", duration=10.0,
        abort=AbortRecord(reason="SLO", slo="avail", observed=0.5, threshold=">= 90%", at=None,
                          t=5.0),
        faults=[FaultRecord(name="f", kind="processPause", description="pause", targets=["pid 1"],
                            at=1.0, duration=5.0, revert_state={"version": 1, "pids": [1]})],
        slos=[SloRecord(name="avail", probe="web", objective="successRate", threshold=">= 90%",
                        window=2.0, verdict="breached", observed=0.5)],
        probes={"web": [SampleRecord(t=0.5, ok=True, latency=0.01, detail="200", phase="baseline"),
                        SampleRecord(t=1.0, ok=False, latency=None, detail="503",
                                     phase="observing")]},
    )
    data: dict[str, Any] = json.loads(record.to_json())
    return data


def write(path: Path, data: dict[str, Any], **literals: str) -> Path:
    """``data`` as JSON, with each string "@NAME@" replaced by the raw JSON text literals[NAME]."""
    text = json.dumps(data, indent=1)
    for name, literal in literals.items():
        text = text.replace(f'"@{name}@"', literal)
    path.write_text(text)
    return path


def report(path: Path, fmt: str = "html") -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "report", str(path), "--format", fmt],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        preexec_fn=_limit_memory,
    )
    return result, time.monotonic() - start


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def refused(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert fragment in result.stderr, result.stderr
    assert result.stdout == ""


def test_the_sample_journal_renders(tmp_path: Path) -> None:
    path = write(tmp_path / "run.json", journal())
    for fmt in FORMATS:
        result, _ = report(path, fmt)
        assert result.returncode == 0, (fmt, result.stderr)


@pytest.mark.parametrize("fmt", FORMATS)
def test_200000_deep_json_is_refused(tmp_path: Path, fmt: str) -> None:
    data = journal()
    data["faults"][0]["revert_state"]["x"] = "@DEEP@"
    path = write(tmp_path / "run.json", data, DEEP="[" * 200_000 + "]" * 200_000)
    result, took = report(path, fmt)
    refused(result, "not a chaos run journal: nested more than 64 levels deep")
    assert f"{path}:" in result.stderr
    assert took < FAST, took


def test_nesting_past_the_cap_but_within_the_json_parser_is_refused(tmp_path: Path) -> None:
    data = journal()
    data["faults"][0]["revert_state"]["x"] = "@DEEP@"
    path = write(tmp_path / "run.json", data, DEEP="[" * 70 + "]" * 70)
    result, _ = report(path)
    refused(result, "nested more than 64 levels deep at 'faults[0].revert_state.x")


@pytest.mark.parametrize(("where", "literal"), [
    ("duration", "1e999"),
    ("sample-latency", "-1e999"),
    ("sample-t", "1E400"),
    ("revert-state", "1e999"),  # a part no field reads: refused all the same
    ("abort-observed", "-9.9e9999"),
])
@pytest.mark.parametrize("fmt", FORMATS)
def test_non_finite_numbers_are_refused_anywhere(tmp_path: Path, where: str, literal: str,
                                                 fmt: str) -> None:
    data = journal()
    if where == "duration":
        data["duration"] = "@X@"
    elif where == "sample-latency":
        data["probes"]["web"][0]["latency"] = "@X@"
    elif where == "sample-t":
        data["probes"]["web"][1]["t"] = "@X@"
    elif where == "revert-state":
        data["faults"][0]["revert_state"]["deep"] = {"inner": ["@X@"]}
    else:
        data["abort"]["observed"] = "@X@"
    path = write(tmp_path / "run.json", data, X=literal)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if literal in text)
    result, took = report(path, fmt)
    refused(result, f"the number {literal} is out of range (not finite)")
    assert f"{path}:{line}:" in result.stderr, result.stderr
    assert took < FAST, took


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused(tmp_path: Path, literal: str) -> None:
    data = journal()
    data["duration"] = "@X@"
    result, _ = report(write(tmp_path / "run.json", data, X=literal))
    refused(result, f"{literal} is not valid JSON")


@pytest.mark.parametrize(("digits", "key"), [(400, "t"), (5000, "t"), (25, "evaluations")])
def test_overlong_integers_are_refused(tmp_path: Path, digits: int, key: str) -> None:
    # 400 digits overflowed float() in the reader; 5000 exceed Python's int-str limit.
    data = journal()
    if key == "t":
        data["probes"]["web"][0]["t"] = "@X@"
    else:
        data["slos"][0]["evaluations"] = "@X@"
    result, _ = report(write(tmp_path / "run.json", data, X="9" * digits))
    refused(result, f"an integer of {digits} digits (at most 19)")


def test_a_symlink_to_dev_zero_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.symlink_to("/dev/zero")
    result, took = report(path)
    refused(result, "is a character device (a symlink to /dev/zero), not a regular file")
    assert took < FAST, took


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    os.mkfifo(path)
    result, took = report(path)
    refused(result, "is a FIFO (named pipe), not a regular file")
    assert took < FAST, took


def test_a_journal_over_64_mib_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    with path.open("w") as fh:
        fh.truncate(65 * 1024 * 1024)  # sparse: nothing is written, st_size says it
    result, took = report(path)
    refused(result, "a journal is at most 64 MiB (67108864 bytes)")
    assert took < FAST, took


def test_directory_and_missing_file(tmp_path: Path) -> None:
    refused(report(tmp_path)[0], "is a directory, not a journal file")
    refused(report(tmp_path / "nope.json")[0], "no such file")


def test_a_symlink_to_a_real_journal_still_works(tmp_path: Path) -> None:
    real = write(tmp_path / "real.json", journal())
    link = tmp_path / "run.json"
    link.symlink_to(real)
    assert load_record(link).run_id == "r1"
