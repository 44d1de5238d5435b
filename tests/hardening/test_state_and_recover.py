"""The state directory, its journals and `chaos recover` treat what is on disk as untrusted:
folders and files another user could have written are refused, nothing is followed through a
symlink, modes are private whatever the umask, recover acts only on what it can re-identify, and
one bad journal is quarantined instead of blocking the rest. Real files, processes and the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hardening_kit import STRANGER, chaos, experiment, journal_line, state_of, target


def _run(tmp: Path, state: Path, fault: str = "processKill: {target: {pid: 99999999}}",
         ) -> subprocess.CompletedProcess[str]:
    exp = tmp / "exp.yaml"
    exp.write_text(experiment(fault))
    return chaos(tmp, "run", str(exp), "--state-dir", str(state))


@pytest.mark.parametrize("how", ["owned-by-another-user", "writable-by-others"])
def test_a_state_folder_another_user_could_write_is_refused(tmp_path: Path, how: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    if how == "owned-by-another-user":
        os.chown(state, STRANGER, STRANGER)
        expected = f"is owned by uid {STRANGER}"
    else:
        os.chmod(state, 0o777)
        expected = "is writable by group and others (mode drwxrwxrwx, 0777): refusing to use it"
    proc, pidfile = target(tmp_path)
    try:
        result = _run(tmp_path, state, f'processPause: {{target: {{pidfile: "{pidfile}"}}}}')
        assert result.returncode == 2, result.stdout + result.stderr
        assert expected in result.stderr
        assert state_of(proc.pid) != "T"
    finally:
        proc.kill()
        proc.wait()


def test_state_is_private_whatever_the_umask(tmp_path: Path) -> None:
    proc, pidfile = target(tmp_path)
    state = tmp_path / "fresh" / "state"
    exp = tmp_path / "exp.yaml"
    exp.write_text(experiment(f'processPause: {{target: {{pidfile: "{pidfile}"}}}}',
                              duration="300ms"))
    try:
        result = subprocess.run(
            ["sh", "-c", 'umask 000 && exec "$0" -m chaos run "$1" --state-dir "$2"',
             sys.executable, str(exp), str(state)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")})
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        proc.kill()
        proc.wait()
    for folder in (state, state / "runs", state / "locks"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for file in [*(state / "runs").iterdir(), *(state / "locks").iterdir()]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_a_planted_lock_symlink_is_not_followed(tmp_path: Path) -> None:
    proc, pidfile = target(tmp_path)
    state = tmp_path / "state"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    try:
        first = _run(tmp_path, state, f'processPause: {{target: {{pidfile: "{pidfile}"}}}}')
        assert first.returncode == 0, first.stdout + first.stderr
        (lock,) = (state / "locks").iterdir()
        lock.unlink()
        lock.symlink_to(victim)
        again = _run(tmp_path, state, f'processPause: {{target: {{pidfile: "{pidfile}"}}}}')
        assert again.returncode == 2, again.stdout + again.stderr
        assert "is a symlink: refusing to follow it" in again.stdout + again.stderr
        assert victim.read_text() == "precious\n"
    finally:
        proc.kill()
        proc.wait()


def _journal(state: Path, run_id: str, *records: str) -> Path:
    runs = state / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    os.chmod(runs, 0o700)
    path = runs / f"{run_id}.jsonl"
    path.write_text("".join(records))
    os.chmod(path, 0o600)
    return path


def _stopped_process() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True)
    os.kill(proc.pid, signal.SIGSTOP)
    return proc


def test_recover_resumes_only_what_it_can_re_identify(tmp_path: Path) -> None:
    """A journal without start times made recover resume an arbitrary stopped process."""
    state = tmp_path / "state"
    bystander = _stopped_process()
    try:
        _journal(state, "r1", journal_line(type="start", run_id="r1", experiment="x"),
                 journal_line(type="intent", fault="p", kind="processPause", targets=["pid"],
                              target_keys=[], revert_state={"version": 1,
                                                            "pids": [bystander.pid]}))
        result = chaos(tmp_path, "recover", "--state-dir", str(state))
        assert result.returncode == 4, result.stdout + result.stderr
        assert "cannot be read by this version" in result.stderr
        assert "every pid needs its start time" in result.stderr
        assert state_of(bystander.pid) == "T", "a process recover cannot re-identify is left be"
    finally:
        bystander.kill()
        bystander.wait()


def test_recover_kills_no_process_just_for_its_command_line(tmp_path: Path) -> None:
    """A burner state without start times made recover SIGKILL any process whose command line
    contained the burner module's name."""
    state = tmp_path / "state"
    lookalike = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                  "chaos.platform.local._burner"], start_new_session=True)
    try:
        _journal(state, "r2", journal_line(type="start", run_id="r2"),
                 journal_line(type="intent", fault="b", kind="cpuStress", targets=["cpu"],
                              target_keys=[], revert_state={"version": 1, "variant": "local",
                                                            "pids": [lookalike.pid],
                                                            "start_ticks": []}))
        result = chaos(tmp_path, "recover", "--state-dir", str(state))
        assert result.returncode == 4
        assert lookalike.poll() is None, "the look-alike process is alive"
    finally:
        lookalike.kill()
        lookalike.wait()


def test_recover_takes_the_helper_image_from_configuration_not_the_journal(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    helper = {"version": 1, "variant": "kubernetes", "pods": [
        {"namespace": "shop", "name": "web-1", "uid": "6f1c2a9e-0b1c-4a22-9d3e-1f2a3b4c5d6e", "target": "app"}],
        "container": "chaos-12345678-burn", "undo_container": "chaos-12345678-burn-undo",
        "image": "evil.example/steal-everything:latest"}
    _journal(state, "r3", journal_line(type="start", run_id="r3"),
             journal_line(type="intent", fault="burn", kind="cpuStress", targets=["pod"],
                          target_keys=[], revert_state=helper))
    result = chaos(tmp_path, "recover", "--state-dir", str(state))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "does not take it from the journal" in result.stderr
    assert "--helper-image" in result.stderr
    dry = chaos(tmp_path, "recover", "--dry-run", "--state-dir", str(state))
    assert "evil.example" not in dry.stdout and "--image=$CHAOS_HELPER_IMAGE" in dry.stdout


@pytest.mark.parametrize("bad", ["not-an-object-state", "symlink", "fifo", "huge"])
def test_one_bad_journal_is_quarantined_and_blocks_nothing(tmp_path: Path, bad: str) -> None:
    state = tmp_path / "state"
    paused = _stopped_process()
    try:
        info = Path(f"/proc/{paused.pid}/stat").read_text()
        ticks = int(info[info.rfind(")") + 2:].split()[19])
        _journal(state, "good", journal_line(type="start", run_id="good"),
                 journal_line(type="intent", fault="p", kind="processPause",
                              targets=["pid"], target_keys=[],
                              revert_state={"version": 1, "pids": [paused.pid],
                                            "start_ticks": [ticks]}))
        runs = state / "runs"
        if bad == "not-an-object-state":
            _journal(state, "bad", journal_line(type="intent", fault="x", kind="processPause",
                                                revert_state=[1, 2, 3]))
        elif bad == "symlink":
            (runs / "bad.jsonl").symlink_to("/etc/passwd")
        elif bad == "fifo":
            os.mkfifo(runs / "bad.jsonl")
        else:
            with open(runs / "bad.jsonl", "wb") as fh:
                fh.truncate(17 * 1024 * 1024)
        result = chaos(tmp_path, "recover", "--state-dir", str(state), timeout=30)
        # The good journal is recovered; the bad one is set aside and named; exit 4: what the
        # bad one held is unknown.
        assert state_of(paused.pid) not in ("T", None), result.stdout + result.stderr
        assert "reverted: resumed 1 paused process(es)" in result.stdout
        assert "journal bad.jsonl cannot be trusted" in result.stderr
        assert result.returncode == 4
        assert (runs / "quarantine" / "bad.jsonl").exists() or (
            runs / "quarantine" / "bad.jsonl").is_symlink()
        assert (runs / "quarantine" / "bad.why").read_text().strip()
        again = chaos(tmp_path, "recover", "--state-dir", str(state), timeout=30)
        assert again.returncode == 0 and "nothing to recover" in again.stdout
    finally:
        paused.kill()
        paused.wait()


def test_a_bad_journal_does_not_stop_later_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _journal(state, "bad", journal_line(type="intent", fault="x", kind=7, revert_state={}))
    proc, pidfile = target(tmp_path)
    try:
        result = _run(tmp_path, state, f'processPause: {{target: {{pidfile: "{pidfile}"}}}}')
        assert result.returncode == 0, result.stdout + result.stderr
        assert "warning: journal bad.jsonl cannot be trusted" in result.stderr
    finally:
        proc.kill()
        proc.wait()
    assert json.loads((state / "runs" / "quarantine" / "bad.jsonl").read_text())["kind"] == 7


@pytest.mark.parametrize("how", ["world-writable", "owned-by-another-user"])
def test_recover_refuses_a_state_folder_a_run_would_refuse(tmp_path: Path, how: str) -> None:
    """Recover reads journals that say which processes to signal: from a folder another user
    could write, it refuses them as a run refuses the folder, and touches nothing."""
    state = tmp_path / "state"
    bystander = _stopped_process()
    try:
        _journal(state, "r1", journal_line(type="start", run_id="r1", experiment="x"),
                 journal_line(type="intent", fault="p", kind="processPause", targets=["pid"],
                              target_keys=[], revert_state={"version": 1,
                                                            "pids": [bystander.pid]}))
        if how == "world-writable":
            os.chmod(state, 0o777)
            expected = "is writable by group and others"
        else:
            os.chown(state, STRANGER, STRANGER)
            expected = f"is owned by uid {STRANGER}"
        for args in ((), ("--dry-run",)):
            result = chaos(tmp_path, "recover", "--state-dir", str(state), *args)
            assert result.returncode == 2, result.stdout + result.stderr
            assert expected in result.stderr and "refusing to use it" in result.stderr
            assert "nothing to recover" not in result.stdout
        assert state_of(bystander.pid) == "T"
    finally:
        bystander.kill()
        bystander.wait()
