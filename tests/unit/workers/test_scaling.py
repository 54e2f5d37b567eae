"""berth's scaling policy as tables (the old formula: tests/unit/test_depth_fleet.py)."""

from __future__ import annotations

import pytest

from workers.scaling import Plan, bound_wanted, may_leave, plan, warm_reserve


@pytest.mark.parametrize(
    ("active", "share", "minimum", "always", "reserve"),
    [
        (0, 0.4, 4, 0, 0),  # nothing active lately: no reserve, the fleet goes to zero
        (0, 0.4, 4, 2, 2),  # min_tasks stay at all times
        (1, 0.4, 4, 0, 4),  # the minimum while anything is active
        (11, 0.4, 4, 0, 5),  # ceil(0.4 x 11)
        (10, 0.4, 0, 0, 4),  # exact products are not rounded up
        (3, 0.0, 0, 0, 0),  # no reserve: every first command waits for a boot
    ],
)
def test_the_unbound_reserve(
    active: int, share: float, minimum: int, always: int, reserve: int
) -> None:
    assert warm_reserve(active, share, minimum, always) == reserve


def test_a_user_wants_one_bound_worker_per_busy_project_up_to_a_cap() -> None:
    wanted = bound_wanted({"alice": {"a", "b", "c"}, "bob": {"x"}, "carol": set()}, 2)
    assert wanted == {"alice": 2, "bob": 1}


@pytest.mark.parametrize(
    ("wanted", "bound", "idle", "starting", "reserve", "live", "max_tasks", "expected"),
    [
        # nothing idle: start bound workers, then the reserve
        ({"a": 2}, {}, [], 0, 1, 0, 10, Plan({}, {"a": 2}, 1)),
        # idle reserve workers are bound first, newest idle first
        ({"a": 1}, {}, ["r2", "r1"], 0, 1, 2, 10, Plan({"a": ["r2"]}, {}, 0)),
        # what a user already has (bound, or starting bound) counts
        ({"a": 2}, {"a": 2}, ["r1"], 0, 1, 3, 10, Plan({}, {}, 0)),
        # the reserve counts its starting workers
        ({}, {}, ["r1"], 2, 4, 3, 10, Plan({}, {}, 1)),
        # the ceiling: the user short of most is served first, no reserve on top
        ({"a": 1, "b": 3}, {}, [], 0, 2, 8, 10, Plan({}, {"b": 2}, 0)),
        # at the ceiling the idle reserve still serves
        ({"a": 1}, {}, ["r1"], 0, 1, 10, 10, Plan({"a": ["r1"]}, {}, 0)),
    ],
)
def test_the_plan(
    wanted: dict[str, int],
    bound: dict[str, int],
    idle: list[str],
    starting: int,
    reserve: int,
    live: int,
    max_tasks: int,
    expected: Plan,
) -> None:
    assert plan(wanted, bound, idle, starting, reserve, live, max_tasks) == expected


@pytest.mark.parametrize(
    ("me", "reserve", "leaves"),
    [
        ("w1", 0, True),  # no reserve: everyone idle past idle_seconds leaves
        ("w1", 2, True),  # the longest idle leaves first
        ("w2", 2, False),
        ("w3", 2, False),
        ("w3", 3, False),  # exactly the reserve: nobody leaves
        ("w2", 1, True),
    ],
)
def test_only_the_surplus_over_the_reserve_leaves_longest_idle_first(
    me: str, reserve: int, leaves: bool
) -> None:
    idle = {"w1": 10.0, "w2": 20.0, "w3": 30.0}
    assert may_leave(me, idle, reserve) is leaves
