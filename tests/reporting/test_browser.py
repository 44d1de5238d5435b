"""The HTML report of an aborted run, rendered by a real headless Chromium.

Chromium comes from Debian (``tests/reporting/setup.sh``). Without it the test is skipped with a
loud message on a workstation and fails in CI (``CI`` set), so the gate never silently shrinks.
A copy of the screenshot is left at /tmp/chaos-report-screenshot.png for people to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaos.journal.record import RunRecord
from chaos.reporting import render_html

SHARED_SCREENSHOT = Path("/tmp/chaos-report-screenshot.png")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    message = ("chromium is not installed: run tests/reporting/setup.sh (Debian package "
               "'chromium') to test the HTML report in a real browser")
    if os.environ.get("CI"):
        pytest.fail(message)
    print(f"\n*** SKIPPED: {message} ***")
    pytest.skip(message)


def run_chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_chromium_renders_the_aborted_run(aborted_record: RunRecord, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(aborted_record), encoding="utf-8")
    url = page.resolve().as_uri()

    shot = tmp_path / "report.png"
    result = run_chromium([f"--screenshot={shot}", "--window-size=1280,1600", url], tmp_path)
    assert shot.exists(), f"no screenshot; chromium said:\n{result.stderr[-2000:]}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) blank"
    shutil.copyfile(shot, SHARED_SCREENSHOT)

    result = run_chromium(["--dump-dom", url], tmp_path)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert '<svg id="timeline"' in dom
    assert 'class="fault-window' in dom
    assert 'class="abort-marker"' in dom
    assert 'class="probe-lane"' in dom
    assert "ABORTED" in dom
