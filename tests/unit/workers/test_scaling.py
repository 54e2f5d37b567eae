"""The scaling policies as tables: seed 004's formula as written, and berth's."""

from __future__ import annotations

import pytest

from workers.scaling import Limits, Observed, berth_launch, seed_004_desired, seed_004_launch

LIMITS = Limits(messages_per_task=2, min_tasks=0, max_tasks=10)


@pytest.mark.parametrize(
    ("visible", "running", "limits", "desired", "launch"),
    [
        (0, 0, LIMITS, 0, 0),
        (1, 0, LIMITS, 1, 1),  # ceil(1 / 2)
        (5, 0, LIMITS, 3, 3),
        (5, 2, LIMITS, 3, 1),
        (5, 4, LIMITS, 3, 0),  # never negative: scale-in is the workers' own idle exit
        (100, 0, LIMITS, 10, 10),  # capped at max_tasks
        (0, 0, Limits(2, 2, 10), 2, 2),  # floor at min_tasks
        (7, 0, Limits(3, 1, 2), 2, 2),
    ],
)
def test_seed_004_formula(
    visible: int, running: int, limits: Limits, desired: int, launch: int
) -> None:
    observed = Observed(visible=visible, in_flight=0, running=running)
    assert seed_004_desired(observed, limits) == desired
    assert seed_004_launch(observed, limits) == launch


def berth(
    visible: int, in_flight: int, running: int, starting: int = 0, limits: Limits = LIMITS
) -> int:
    observed = Observed(visible=visible, in_flight=in_flight, running=running, starting=starting)
    return berth_launch(observed, limits, start_delay=60, expected_seconds=15)


@pytest.mark.parametrize(
    ("case", "launch"),
    [
        (berth(0, 0, 0), 0),
        (berth(1, 0, 0), 1),  # scale from zero: a backlog with no worker always gets one
        (berth(3, 0, 1), 0),  # one idle worker drains 45 s of work before a new one starts
        (berth(10, 0, 0), 5),  # 150 s of work, nobody: ceil(150 / (2 * 15))
        (berth(10, 2, 2), 2),  # two busy workers free up in time for 105 of the 150 s
        (berth(10, 0, 0, starting=5), 0),  # starting tasks count: no second answer
        (berth(100, 0, 0), 10),  # capped at max_tasks
        (berth(100, 4, 4, starting=4), 2),  # ... including what already runs or starts
        (berth(0, 0, 0, limits=Limits(2, 2, 10)), 2),  # floor at min_tasks
    ],
)
def test_berth_policy(case: int, launch: int) -> None:
    assert case == launch


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid scaling limits"):
        Limits(messages_per_task=0, min_tasks=0, max_tasks=1)
    with pytest.raises(ValueError, match="invalid scaling limits"):
        Limits(messages_per_task=1, min_tasks=3, max_tasks=2)
