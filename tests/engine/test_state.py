import pytest

from chaos.engine.state import Phase, RunState
from chaos.errors import IllegalTransition


def test_happy_path_is_allowed() -> None:
    state = RunState()
    for phase in [Phase.BASELINE, Phase.INJECTING, Phase.OBSERVING, Phase.REVERTING,
                  Phase.RECOVERING, Phase.REPORTING, Phase.DONE]:
        state.move(phase)
    assert state.phase is Phase.DONE


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], Phase.INJECTING),  # faults before the baseline
        ([Phase.BASELINE, Phase.INJECTING], Phase.RECOVERING),  # recovery before reverting
        ([Phase.BASELINE, Phase.INJECTING, Phase.OBSERVING], Phase.REPORTING),  # skip reverts
        ([Phase.REPORTING, Phase.DONE], Phase.BASELINE),  # done is final
    ],
)
def test_illegal_transitions_are_rejected_with_a_clear_message(
    path: list[Phase], bad: Phase
) -> None:
    state = RunState()
    for phase in path:
        state.move(phase)
    with pytest.raises(IllegalTransition, match=f"cannot go from .* to {bad.value}"):
        state.move(bad)
