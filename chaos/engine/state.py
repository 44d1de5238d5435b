"""The run lifecycle as a tiny explicit state machine.

    preflight -> baseline -> injecting -> observing -> reverting -> recovering -> reporting -> done

A stopped run (abort, interrupt, error) goes to ``reverting`` from baseline, injecting or
observing and then to ``reporting``, skipping the recovery check; a breach at baseline or a failed
preflight goes straight to ``reporting``. Any other move is a bug and raises
:class:`IllegalTransition`.
"""

from __future__ import annotations

import enum

from chaos.errors import IllegalTransition


class Phase(enum.StrEnum):
    PREFLIGHT = "preflight"
    BASELINE = "baseline"
    INJECTING = "injecting"
    OBSERVING = "observing"
    REVERTING = "reverting"
    RECOVERING = "recovering"
    REPORTING = "reporting"
    DONE = "done"


_ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.PREFLIGHT: frozenset({Phase.BASELINE, Phase.REPORTING}),
    Phase.BASELINE: frozenset(
        {Phase.INJECTING, Phase.RECOVERING, Phase.REVERTING, Phase.REPORTING}
    ),
    Phase.INJECTING: frozenset({Phase.OBSERVING, Phase.REVERTING}),
    Phase.OBSERVING: frozenset({Phase.REVERTING}),
    Phase.REVERTING: frozenset({Phase.RECOVERING, Phase.REPORTING}),
    Phase.RECOVERING: frozenset({Phase.REPORTING}),
    Phase.REPORTING: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}


class RunState:
    """Holds the current phase and the history of moves; rejects illegal transitions."""

    def __init__(self) -> None:
        self.phase = Phase.PREFLIGHT
        self.history: list[Phase] = [Phase.PREFLIGHT]

    def move(self, to: Phase) -> None:
        if to not in _ALLOWED[self.phase]:
            allowed = ", ".join(sorted(p.value for p in _ALLOWED[self.phase])) or "nothing"
            raise IllegalTransition(
                f"run state cannot go from {self.phase.value} to {to.value} "
                f"(allowed from {self.phase.value}: {allowed})"
            )
        self.phase = to
        self.history.append(to)

    def visited(self, phase: Phase) -> bool:
        return phase in self.history
