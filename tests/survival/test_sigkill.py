"""Proof by SIGKILL (a small sample; bench/sigkill_survival.py runs 50+ trials)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness, random_delay


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


SEED = random.Random(20261121)
RECOVER_DELAYS = [0.3, 1.9, 2.6, random_delay(SEED)]  # start-up, mid-injection, later, random


@pytest.mark.parametrize("delay", RECOVER_DELAYS)
def test_sigkill_then_recover_leaves_nothing(harness: Harness, delay: float) -> None:
    trial = harness.trial("recover", delay)
    assert trial.exit_code in (-9, 0)  # 0: the random moment came after the run had ended
    assert trial.ok, trial.leftovers
    assert trial.recover_exit == 0


def test_sigkill_mid_fault_found_outstanding_faults(harness: Harness) -> None:
    trial = harness.trial("recover", 2.6)
    assert trial.outstanding_at_kill >= 2, "the kill landed while faults were active"
    assert trial.ok, trial.leftovers


@pytest.mark.parametrize("delay", [2.4, random_delay(SEED)])
def test_sigkill_without_recover_expires_by_itself(harness: Harness, delay: float) -> None:
    trial = harness.trial("expiry", delay)
    assert trial.ok, trial.leftovers


@pytest.mark.parametrize(("mode", "delay"),
                         [("SIGTERM", 2.5), ("SIGINT", 2.2), ("SIGINT", random_delay(SEED))])
def test_sigterm_and_sigint_revert_everything(harness: Harness, mode: str, delay: float) -> None:
    trial = harness.trial(mode, delay)
    assert trial.ok, trial.leftovers
