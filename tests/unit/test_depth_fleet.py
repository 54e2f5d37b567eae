"""The old orchestrator's depth-only formula, as written (the simulation's baseline)."""

from __future__ import annotations

import pytest

from bench.depth_fleet import Limits, Observed, depth_desired, depth_launch

LIMITS = Limits(min_tasks=0, max_tasks=10, messages_per_task=2)


@pytest.mark.parametrize(
    ("visible", "running", "limits", "desired", "launch"),
    [
        (0, 0, LIMITS, 0, 0),
        (1, 0, LIMITS, 1, 1),  # ceil(1 / 2)
        (5, 0, LIMITS, 3, 3),
        (5, 2, LIMITS, 3, 1),
        (5, 4, LIMITS, 3, 0),  # never negative: scale-in is the workers' own idle exit
        (100, 0, LIMITS, 10, 10),  # capped at max_tasks
        (0, 0, Limits(2, 10), 2, 2),  # floor at min_tasks
        (7, 0, Limits(1, 2, 3), 2, 2),
    ],
)
def test_the_depth_only_formula(
    visible: int, running: int, limits: Limits, desired: int, launch: int
) -> None:
    observed = Observed(visible=visible, running=running)
    assert depth_desired(observed, limits) == desired
    assert depth_launch(observed, limits) == launch
