"""The scaling policies as tables: the old orchestrator's formula as written, and berth's."""

from __future__ import annotations

import pytest

from workers.scaling import Limits, Observed, berth_launch, depth_desired, depth_launch

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


@pytest.mark.parametrize(
    ("projects", "running", "starting", "limits", "launch"),
    [
        (0, 0, 0, LIMITS, 0),
        (1, 0, 0, LIMITS, 1),  # scale from zero
        (1, 1, 0, LIMITS, 0),  # a project's commands never need a second worker
        (2, 1, 0, LIMITS, 1),  # one busy on a long command: the other project gets its own
        (3, 0, 2, LIMITS, 1),  # starting tasks already answer their share
        (30, 4, 2, LIMITS, 4),  # capped at max_tasks, counting what runs and starts
        (0, 0, 0, Limits(2, 10), 2),  # floor at min_tasks
        (0, 5, 0, LIMITS, 0),  # never negative: idle workers leave by themselves
    ],
)
def test_berth_policy_is_one_worker_per_project_with_work(
    projects: int, running: int, starting: int, limits: Limits, launch: int
) -> None:
    observed = Observed(running=running, starting=starting, projects=projects)
    assert berth_launch(observed, limits) == launch


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid scaling limits"):
        Limits(min_tasks=0, max_tasks=1, messages_per_task=0)
    with pytest.raises(ValueError, match="invalid scaling limits"):
        Limits(min_tasks=3, max_tasks=2)
