"""A full or read-only disk never skips a revert: on a small tmpfs that fills up mid-run, the run
goes straight to reverting, prints its summary and (when even the revert cannot be recorded)
the manual undo steps; a read-only path is refused before anything is touched."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hardening_kit import REPO, chaos, env, experiment, state_of, target

pytestmark = pytest.mark.root


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the tests run as root): {done.stderr}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def _wal_types(state: Path) -> list[str]:
    runs = list((state / "runs").glob("*.jsonl"))
    if not runs:
        return []
    return [line.split('"type":"')[1].split('"')[0]
            for line in runs[0].read_text(errors="replace").splitlines() if '"type":"' in line]


def test_a_disk_that_fills_mid_run_leads_straight_to_the_revert(tmp_path: Path) -> None:
    first, first_pid = target(tmp_path, "first")
    second, second_pid = target(tmp_path, "second")
    faults = (
        f'processPause: {{target: {{pidfile: "{first_pid}"}}}}\n'
        f'    - name: g\n      at: 2s\n      duration: 20s\n'
        f'      processPause: {{target: {{pidfile: "{second_pid}"}}}}'
    )
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment(faults, duration="20s",
                              extra="  limits: {expiryGrace: 60s, maxDuration: 2m}\n"))
    try:
        with tmpfs(tmp_path / "disk", "512k") as disk:
            state, journal = disk / "state", disk / "run.json"
            runner = subprocess.Popen(
                [sys.executable, "-m", "chaos", "run", str(exp), "--state-dir", str(state),
                 "--journal", str(journal)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                env=env(tmp_path))
            deadline = time.monotonic() + 30
            while "verified" not in _wal_types(state):
                assert time.monotonic() < deadline, "the first fault never took effect"
                time.sleep(0.05)
            assert state_of(first.pid) == "T"
            _fill(disk)
            filled = time.monotonic()
            out, err = runner.communicate(timeout=60)
            took = time.monotonic() - filled
        # Straight to the revert at the next write (the second fault's inject), not 20 s later
        # and not when the watchdog fires (60 s).
        assert took < 10, (took, out, err)
        assert state_of(first.pid) not in ("T", None) and state_of(second.pid) not in ("T", None)
        assert runner.returncode in (1, 4), out + err
        assert "Traceback" not in err
        assert out.startswith("hardening  run "), "the summary reached the terminal"
        assert "could not be written" in out
        if runner.returncode == 4:
            assert "remove it by hand if it is still there" in err and "kill -CONT" in err
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("what", ["state", "journal", "report"])
def test_a_read_only_path_is_refused_before_anything(tmp_path: Path, what: str) -> None:
    proc, pidfile = target(tmp_path)
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment(f'processPause: {{target: {{pidfile: "{pidfile}"}}}}'))
    try:
        with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
            args = {"state": ["--state-dir", str(ro / "state")],
                    "journal": ["--journal", str(ro / "run.json")],
                    "report": ["--report-html", str(ro / "report.html")]}[what]
            if what != "state":
                args += ["--state-dir", str(tmp_path / "state")]
            result = chaos(tmp_path, "run", str(exp), *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
        assert state_of(proc.pid) != "T"
    finally:
        proc.kill()
        proc.wait()
    assert not os.path.exists(tmp_path / "state" / "runs") or not any(
        (tmp_path / "state" / "runs").glob("*.jsonl")), "nothing was journaled"
