"""The write-ahead journal and target locks, with real files, flocks and processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chaos.errors import InvalidInput
from chaos.journal.wal import (
    Journal,
    StateDir,
    TargetLocks,
    append_to,
    check_no_outstanding,
    outstanding_runs,
    read_records,
    run_is_alive,
    summarize,
)


def test_records_round_trip_and_torn_last_line_is_ignored(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    journal = Journal(state, "r1")
    journal.append("start", experiment="x")
    journal.append("intent", fault="f", kind="processPause", targets=["pid 1"],
                   target_keys=["local:process:1"], revert_state={"pids": [1]})
    journal.close()
    with journal.path.open("ab") as fh:
        fh.write(b'{"type":"applied","fault":"f","revert_st')  # a crash mid-write
    records = read_records(journal.path)
    assert [r["type"] for r in records] == ["start", "intent"]
    summary = summarize(journal.path)
    assert [f.name for f in summary.outstanding] == ["f"]
    assert summary.outstanding[0].applied is False  # intent only: maybe half applied
    # appending after a torn line seals it off and stays readable
    assert append_to(journal.path, "reverted", fault="f", by="recover")
    assert [r["type"] for r in read_records(journal.path)][-1] == "reverted"
    assert summarize(journal.path).outstanding == []


def test_live_run_is_never_recovered(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    journal = Journal(state, "live")
    journal.append("intent", fault="f", kind="cpuStress", targets=[], target_keys=["local:cpu"])
    assert run_is_alive(journal.path)
    assert outstanding_runs(state) == []
    assert append_to(journal.path, "reverted", fault="f") is False
    journal.close()
    assert not run_is_alive(journal.path)
    assert [r.run_id for r in outstanding_runs(state)] == ["live"]


def _hold_in_child(code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_killed_run_releases_its_journal_and_locks(tmp_path: Path) -> None:
    proc = _hold_in_child(f"""
        import sys, time
        from pathlib import Path
        from chaos.journal.wal import Journal, StateDir, TargetLocks
        state = StateDir(Path({str(tmp_path)!r}))
        j = Journal(state, "crashy")
        j.append("intent", fault="f", kind="processPause", targets=[], target_keys=["k1"])
        TargetLocks(state).acquire(["k1"])
        print("ready", flush=True)
        time.sleep(60)
    """)
    state = StateDir(tmp_path)
    with pytest.raises(InvalidInput, match=rf"another run is injecting into k1 right now \(pid {proc.pid}\)"):
        TargetLocks(state).acquire(["k1"])
    assert outstanding_runs(state) == []  # alive: not recoverable yet
    proc.kill()
    proc.wait()
    locks = TargetLocks(state)
    locks.acquire(["k1"])  # the kernel released the flock with the process
    locks.release()
    with pytest.raises(InvalidInput, match=r"(?s)run crashy left fault .f.*chaos recover"):
        check_no_outstanding(state, ["k1", "k2"])
    check_no_outstanding(state, ["k2"])  # another target is fine


def test_unwritable_state_dir_is_invalid_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidInput, match="cannot use state directory"):
        StateDir(blocker / "sub").prepare()
