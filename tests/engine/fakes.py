"""Fake probes, faults and a platform behind the engine's protocols, scripted by virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.engine.protocols import Outcome
from chaos.errors import (
    FaultNotInEffect,
    InjectFailed,
    RevertFailed,
    TargetNotFound,
    TransientError,
)
from chaos.model.experiment import FaultSpec, ProbeSpec, RollbackSpec


@dataclass
class World:
    """Shared fake state: which faults are active, and a log of everything done, with times."""

    active: set[str] = field(default_factory=set)
    log: list[tuple[float, str]] = field(default_factory=list)
    fail_inject: set[str] = field(default_factory=set)
    fail_revert: set[str] = field(default_factory=set)
    missing_targets: set[str] = field(default_factory=set)
    rollback_fails: set[str] = field(default_factory=set)
    transient_reverts: dict[str, int] = field(default_factory=dict)
    #: Faults whose inject "succeeds" but whose effect never shows on the target.
    no_effect: set[str] = field(default_factory=set)
    #: Faults whose effect shows only after this many seconds.
    effect_delay: dict[str, float] = field(default_factory=dict)
    #: Faults whose effect stays after their revert.
    sticky: set[str] = field(default_factory=set)

    def note(self, what: str) -> None:
        self.log.append((asyncio.get_running_loop().time(), what))

    def times(self, what: str) -> list[float]:
        return [t for t, w in self.log if w == what]


class FakeProbe:
    """Healthy unless ``health(world, now)`` says otherwise; takes ``latency`` seconds."""

    def __init__(
        self,
        spec: ProbeSpec,
        world: World,
        health: Callable[[World, float], bool],
        latency: Callable[[World, float], float],
    ) -> None:
        self._spec = spec
        self.world = world
        self.health = health
        self.latency = latency

    @property
    def spec(self) -> ProbeSpec:
        return self._spec

    async def sample(self) -> Outcome:
        loop = asyncio.get_running_loop()
        start = loop.time()
        took = self.latency(self.world, start)
        await asyncio.sleep(took)
        ok = self.health(self.world, start)
        return Outcome(ok, took, "200" if ok else "503")


class FakeFault:
    def __init__(self, spec: FaultSpec, world: World, one_shot: bool = False) -> None:
        self._spec = spec
        self.world = world
        self._one_shot = one_shot

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    @property
    def one_shot(self) -> bool:
        return self._one_shot

    @property
    def kind(self) -> str:
        return self._spec.kind.key

    def targets(self) -> list[str]:
        return [f"fake-target-of-{self._spec.name}"]

    def describe(self) -> str:
        return f"fake {self._spec.kind.key}"

    def revert_state(self) -> dict[str, object]:
        return {"fake": self._spec.name}

    def target_keys(self) -> list[str]:
        return [f"fake:{self._spec.name}"]

    async def inject(self) -> None:
        self.world.note(f"inject:{self._spec.name}")
        if self._spec.name in self.world.fail_inject:
            raise InjectFailed(f"cannot inject {self._spec.name}")
        if not self._one_shot:
            self.world.active.add(self._spec.name)

    async def verify(self, within: float) -> str:
        """Looks at the fake target: the effect shows (after ``effect_delay``) unless the fault
        is in ``no_effect``."""
        name = self._spec.name
        wait = self.world.effect_delay.get(name, 0.0)
        if name in self.world.no_effect or wait > within:
            await asyncio.sleep(within)
            raise FaultNotInEffect(f"fake-target-of-{name}: the effect never showed")
        await asyncio.sleep(wait)
        self.world.note(f"verified:{name}")
        return f"fake effect of {name} seen"

    async def verify_reverted(self, within: float) -> str:
        if self._spec.name in self.world.sticky:
            raise RevertFailed(f"fake-target-of-{self._spec.name}: the effect is still there")
        return "gone"

    async def revert(self) -> None:
        self.world.note(f"revert:{self._spec.name}")
        if self._spec.name in self.world.fail_revert:
            raise RevertFailed(f"cannot revert {self._spec.name}")
        if self.world.transient_reverts.get(self._spec.name, 0) > 0:
            self.world.transient_reverts[self._spec.name] -= 1
            raise TransientError(f"{self._spec.name}: device busy")
        self.world.active.discard(self._spec.name)


class FakePlatform:
    def __init__(
        self,
        world: World,
        health: Callable[[World, float], bool] = lambda w, t: True,
        latency: Callable[[World, float], float] = lambda w, t: 0.01,
    ) -> None:
        self.world = world
        self.health = health
        self.latency = latency
        self.prepared = False
        self.closed = False
        self.stop: Callable[[str], None] | None = None

    async def preflight(self) -> None:
        return None

    async def prepare(self, stop: Callable[[str], None]) -> None:
        self.prepared = True
        self.stop = stop

    async def plan_fault(self, spec: FaultSpec) -> FakeFault:
        if spec.name in self.world.missing_targets:
            raise TargetNotFound(f"no process matches for {spec.name}")
        return FakeFault(spec, self.world, one_shot=spec.kind.one_shot(spec.params))

    def probe(self, spec: ProbeSpec) -> FakeProbe:
        return FakeProbe(spec, self.world, self.health, self.latency)

    async def run_rollback(self, spec: RollbackSpec) -> str:
        self.world.note(f"rollback:{spec.name}")
        if spec.name in self.world.rollback_fails:
            raise RuntimeError("rollback exploded")
        return "ok"

    async def finish(self, status: str, message: str) -> None:
        self.world.note(f"finish:{status}")

    async def close(self) -> None:
        self.closed = True
