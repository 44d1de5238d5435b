"""The Kubernetes platform keeps its Leases or stops the run: another holder ends it at once,
renewals that keep failing end it before the Lease would expire. (A stand-in for the client's
renew call: the real Lease calls are tested on the test cluster, tests/k8s.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chaos.model import load_experiment_text
from chaos.platform.kubernetes import LeaseHeld, Unavailable
from chaos.targets import kubernetes as kt

EXP = load_experiment_text("""\
apiVersion: chaos/v1
kind: Experiment
metadata: {name: lease}
spec:
  target: {platform: kubernetes, namespace: shop}
  probes: [{name: p, tcp: {host: h, port: 1}}]
""")


class Renewals:
    """Answers renew_lease from a script: None (ok) or an exception, one per call."""

    def __init__(self, script: list[BaseException | None]) -> None:
        self.script = list(script)
        self.calls = 0

    async def renew_lease(self, namespace: str, name: str, holder: str) -> None:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome

    def set_user_agent(self, agent: str) -> None:
        return None


def _keep(client: Renewals, monkeypatch: pytest.MonkeyPatch, timeout: float) -> list[str]:
    monkeypatch.setattr(kt, "LEASE_SECONDS", 3)
    monkeypatch.setattr(kt, "LEASE_RENEW_EVERY", 0.5)
    monkeypatch.setattr(kt, "LEASE_RETRY_EVERY", 0.2)

    async def connect() -> Any:
        return client

    platform = kt.KubePlatform(EXP, "run-1", connect=connect)
    platform._leases = ["shop"]
    stops: list[str] = []

    async def main() -> None:
        task = asyncio.create_task(platform._keep_leases(stops.append))
        try:
            async with asyncio.timeout(timeout):
                while not stops:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        task.cancel()

    asyncio.run(main())
    return stops


def test_another_holder_stops_the_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    held = LeaseHeld("renew lease shop/chaos-runner failed: held by other-run", holder="other-run",
                     expires_at=None)
    stops = _keep(Renewals([None, held]), monkeypatch, timeout=5)
    assert len(stops) == 1 and "lost its Lease shop/chaos-runner" in stops[0]
    assert "held by other-run" in stops[0]


def test_renewals_failing_until_expiry_stop_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    down = Unavailable("renew lease shop/chaos-runner failed: connection refused")
    client = Renewals([down] * 100)
    stops = _keep(client, monkeypatch, timeout=6)
    assert len(stops) == 1 and "could not renew its Lease" in stops[0]
    assert "connection refused" in stops[0]
    assert client.calls >= 5, "retried quickly while the Lease was still valid"


def test_a_passing_hiccup_does_not_stop_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    down = Unavailable("renew lease shop/chaos-runner failed: 503")
    assert _keep(Renewals([down, down, None, None]), monkeypatch, timeout=3) == []
