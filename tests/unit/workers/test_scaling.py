"""The scaling policies as tables: the old orchestrator's formula as written, and berth's."""

from __future__ import annotations

import pytest

from workers.scaling import (
    RETURNS_WITHIN_SECONDS,
    Limits,
    Observed,
    Shares,
    berth_launch,
    depth_desired,
    depth_launch,
    held_for_follow_ups,
    held_within,
    interactive_and_others,
    is_follow_up,
    is_held,
    lasting_projects,
    may_leave,
    warm_reserve,
)

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


SHARES = Shares(interactive=0.34, other=0.2, held=0.15)


@pytest.mark.parametrize(
    ("interactive", "others", "shares", "reserve"),
    [
        (0, 0, SHARES, 0),  # nobody active lately: the fleet may go to zero
        (1, 0, SHARES, 1),  # at least one while any project is warm
        (0, 1, SHARES, 1),
        (3, 0, SHARES, 2),  # ceil(1.02)
        (6, 5, SHARES, 4),  # ceil(2.04 + 1.0)
        (100, 0, SHARES, 34),
        (0, 10, SHARES, 2),  # others count less: their next command is less likely soon
        (5, 5, Shares(0.0, 0.0, 0.0), 0),  # shares 0: no reserve at all
        (5, 0, Shares(1.0, 0.0, 0.0), 5),
        (0, 5, Shares(1.0, 0.0, 0.0), 0),
    ],
)
def test_the_warm_reserve_is_a_share_of_the_projects_active_lately(
    interactive: int, others: int, shares: Shares, reserve: int
) -> None:
    assert warm_reserve(interactive, others, shares) == reserve


@pytest.mark.parametrize(
    ("interactive", "held"), [(0, 0), (1, 1), (6, 1), (7, 2), (20, 3), (100, 15)]
)
def test_a_share_of_the_interactive_projects_is_held_for_follow_ups(
    interactive: int, held: int
) -> None:
    assert held_for_follow_ups(interactive, SHARES) == held
    assert held_for_follow_ups(interactive, Shares(0.3, 0.2, 0.0)) == 0


def test_a_project_with_a_follow_up_lately_is_interactive_the_rest_are_others() -> None:
    recent = [("typing", False), ("typing", True), ("build", False), ("build", False)]
    assert interactive_and_others(recent) == ({"typing"}, {"build"})
    assert interactive_and_others(iter(recent)) == ({"typing"}, {"build"})  # read once
    assert interactive_and_others([]) == (set(), set())


def test_a_follow_up_is_typed_into_an_idle_project_soon_after_its_last_command() -> None:
    now = 1000.0
    assert is_follow_up(0, now - 5, now, keep_warm_seconds=120)
    assert is_follow_up(0, now - 119, now, keep_warm_seconds=120)
    assert not is_follow_up(0, now - 120, now, keep_warm_seconds=120)  # gone cold
    assert not is_follow_up(1, now - 5, now, keep_warm_seconds=120)  # a burst, not a person
    assert not is_follow_up(0, None, now, keep_warm_seconds=120)  # its first command
    assert not is_follow_up(0, now - 5, now, keep_warm_seconds=0)


def test_the_longest_idle_workers_are_held_the_newest_take_anything() -> None:
    idle = {"a": 100.0, "b": 130.0, "c": 160.0}  # a has been idle longest; c just ended one
    assert [w for w in idle if is_held(w, idle, held=1)] == ["a"]
    assert [w for w in idle if is_held(w, idle, held=2)] == ["a", "b"]
    assert [w for w in idle if is_held(w, idle, held=0)] == []
    assert [w for w in idle if is_held(w, idle, held=5)] == ["a", "b", "c"]


def test_no_worker_is_held_while_the_fleet_is_at_its_ceiling() -> None:
    """At max_tasks no new worker comes for a waiting project: the held ones must serve it."""
    assert held_within(2, Observed(running=8, projects=7, reserve=3), LIMITS) == 2  # 10 fit
    assert held_within(2, Observed(running=10, projects=8, reserve=3), LIMITS) == 0


def test_the_reserve_is_launched_on_top_of_the_projects_with_work() -> None:
    assert berth_launch(Observed(running=1, projects=1, reserve=1), LIMITS) == 1
    assert berth_launch(Observed(running=2, projects=1, reserve=1), LIMITS) == 0
    assert berth_launch(Observed(running=0, projects=9, reserve=3), LIMITS) == 10  # max_tasks


def test_the_top_up_counts_a_worker_taken_only_while_its_project_will_keep_it() -> None:
    now = 1000.0
    assert lasting_projects(["waits"], {}, now) == 1  # queued, nothing running: needs one
    assert lasting_projects(["busy"], {"busy": now - 5}, now) == 0  # its worker will serve it
    just_began = now - RETURNS_WITHIN_SECONDS + 1
    assert lasting_projects([], {"short": just_began}, now) == 0  # likely back in the reserve
    assert lasting_projects([], {"long": now - RETURNS_WITHIN_SECONDS}, now) == 1
    assert lasting_projects(["a", "a", "b"], {"b": now - 60, "c": now - 1}, now) == 2


def test_only_the_surplus_over_the_reserve_leaves_longest_idle_first() -> None:
    idle = {"a": 100.0, "b": 130.0, "c": 160.0}  # a has been idle longest
    assert [w for w in idle if may_leave(w, idle, reserve=2)] == ["a"]
    assert [w for w in idle if may_leave(w, idle, reserve=1)] == ["a", "b"]
    assert [w for w in idle if may_leave(w, idle, reserve=0)] == ["a", "b", "c"]
    assert [w for w in idle if may_leave(w, idle, reserve=3)] == []
    tie = {"x": 5.0, "w": 5.0}  # the same second: one name goes, never both
    assert [w for w in tie if may_leave(w, tie, reserve=1)] == ["w"]


def test_held_workers_stay_the_next_longest_idle_leave() -> None:
    """The held ones (the longest idle) wait for follow-ups: the surplus is taken after them,
    or a burst's worker would find itself the only idle one — held — after each command."""
    idle = {"a": 100.0, "b": 130.0, "c": 160.0}
    assert [w for w in idle if may_leave(w, idle, reserve=2, held=1)] == ["b"]
    assert [w for w in idle if may_leave(w, idle, reserve=1, held=1)] == ["b", "c"]
    assert [w for w in idle if may_leave(w, idle, reserve=0, held=1)] == ["a", "b", "c"]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid scaling limits"):
        Limits(min_tasks=0, max_tasks=1, messages_per_task=0)
    with pytest.raises(ValueError, match="invalid scaling limits"):
        Limits(min_tasks=3, max_tasks=2)
