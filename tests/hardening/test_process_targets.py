"""Process targets the runner must never touch, and pidfiles it must not trust: refused at plan
time, exit 2, with nothing signalled. The real CLI against real processes and files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hardening_kit import STRANGER, chaos, experiment, state_of, target


def _plan(tmp: Path, selector: str) -> subprocess.CompletedProcess[str]:
    exp = tmp / "exp.yaml"
    exp.write_text(experiment(f"processPause: {{target: {selector}}}"))
    return chaos(tmp, "plan", str(exp))


@pytest.mark.parametrize(("selector", "why"), [
    ("{pidfile: /proc/self/stat}", "it is the runner itself"),
    ("{pid: 1}", "pid 1 is the system's init process"),
    ("{pid: 2}", "it is a kernel thread"),
])
def test_the_runner_init_and_kernel_threads_are_never_targets(tmp_path: Path, selector: str,
                                                              why: str) -> None:
    result = _plan(tmp_path, selector)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "can never be a fault's target" in result.stderr and why in result.stderr


def test_a_run_never_signals_itself(tmp_path: Path) -> None:
    """`pidfile: /proc/self/stat` made a run SIGKILL itself, skipping its rollbacks."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment("processKill: {target: {pidfile: /proc/self/stat}}",
                              duration="3s").replace("      duration: 3s\n", ""))
    result = chaos(tmp_path, "run", str(exp))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "it is the runner itself" in result.stdout + result.stderr


def test_a_name_that_matches_only_untouchable_processes_finds_none(tmp_path: Path) -> None:
    result = _plan(tmp_path, "{name: '^(/sbin/)?init|kthreadd'}")
    assert result.returncode == 2
    assert "pid 1, kernel threads and the runner's own processes never do" in result.stderr


def test_a_pidfile_symlink_is_not_followed(tmp_path: Path) -> None:
    proc, pidfile = target(tmp_path)
    try:
        link = tmp_path / "link.pid"
        link.symlink_to(pidfile)
        result = _plan(tmp_path, f'{{pidfile: "{link}"}}')
        assert result.returncode == 2 and "is a symlink; refusing to follow it" in result.stderr
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("how", ["owned-by-another-user", "writable-by-others",
                                 "in-a-folder-others-can-write"])
def test_a_pidfile_another_user_could_have_written_is_refused(tmp_path: Path, how: str) -> None:
    """A local user who can write the pidfile could point it at any process."""
    proc, pidfile = target(tmp_path)
    try:
        if how == "owned-by-another-user":
            os.chown(pidfile, STRANGER, STRANGER)
            expected = f"is owned by uid {STRANGER}"
        elif how == "writable-by-others":
            os.chmod(pidfile, 0o666)
            expected = "is writable by group and others"
        else:
            shared = tmp_path / "shared"
            shared.mkdir()
            os.chmod(shared, 0o777)  # no sticky bit: anyone may replace what is in it
            moved = shared / "target.pid"
            moved.write_text(pidfile.read_text())
            pidfile = moved
            expected = f"refused: {shared} is writable by group and others"
        result = _plan(tmp_path, f'{{pidfile: "{pidfile}"}}')
        assert result.returncode == 2, result.stdout + result.stderr
        assert expected in result.stderr
        assert state_of(proc.pid) not in ("T", None), "nothing was signalled"
    finally:
        proc.kill()
        proc.wait()


def test_a_pidfile_in_a_sticky_shared_folder_is_fine(tmp_path: Path) -> None:
    proc, pidfile = target(tmp_path)
    try:
        shared = tmp_path / "sticky"
        shared.mkdir()
        os.chmod(shared, 0o1777)  # like /tmp: others cannot replace what is ours
        moved = shared / "target.pid"
        moved.write_text(pidfile.read_text())
        result = _plan(tmp_path, f'{{pidfile: "{moved}"}}')
        assert result.returncode == 0, result.stderr
        assert f"pid {proc.pid}" in result.stdout
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("pattern", ["(a+)+$", "(x+x+)+y", "(\\\\w+\\\\s?)+$", "((ab)*)+c"])
def test_a_pattern_with_nested_quantifiers_is_refused_at_once(tmp_path: Path,
                                                              pattern: str) -> None:
    """A nested quantifier backtracks exponentially: one took 62 s to plan against the
    machine's command lines. Refused when the experiment is validated."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment(f"processPause: {{target: {{name: '{pattern}'}}}}"))
    started = time.monotonic()
    result = chaos(tmp_path, "validate", str(exp))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nested quantifier" in result.stderr
    assert time.monotonic() - started < 10


def test_a_long_command_line_cannot_stall_a_safe_pattern(tmp_path: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               "a" * 100_000], start_new_session=True)
    try:
        started = time.monotonic()
        result = _plan(tmp_path, "{name: 'a+Q{3}', mode: one}")
        assert time.monotonic() - started < 10
        assert result.returncode == 2  # no command line has a's followed by QQQ
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
