"""How many workers to run, and for whom: pure functions, so the scaler and the simulation use
the same code.

A worker task serves exactly one tenant — the user who owns the projects it runs — for its
whole life: the microVM, not a uid sweep, is the wall between users. So the fleet has two
parts:

- **Bound workers.** A user gets one worker per project with a command queued or running
  (``bound_wanted``), up to ``max_per_user``; a bound worker runs only that user's commands
  (any of their projects, one at a time, each project's in order) and leaves after
  ``keep_warm_seconds`` without one. A person's next command therefore finds their own
  worker still there while they read the output of the last one.
- **The unbound reserve.** Fresh workers no user has touched wait to be bound, so a user's
  first command need not wait for a boot: ``warm_reserve`` = ``max(minimum, ceil(share *
  projects active lately))`` while any was (``min_tasks`` at all times). The scaler binds
  a reserve worker to a user who needs one (a conditional write: never two users) and
  starts a worker already bound for the rest; an
  idle reserve worker beyond the reserve leaves after ``idle_seconds`` (``may_leave``,
  longest idle first). A bound worker never returns to the reserve.

(The depth-only formula of the orchestrator berth replaces lives with the simulation that
compares against it: ``bench/depth_fleet.py``.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

QUEUED = "queued"
"""The ``reason`` of a scaler run woken by a queued command (its scheduled runs have none)."""


def warm_reserve(active_projects: int, share: float, minimum: int = 0, always: int = 0) -> int:
    """Unbound idle workers to hold: ``share`` of the projects active lately (rounded up), at
    least ``minimum`` while any was; ``always`` (``min_tasks``) in any case."""
    if active_projects <= 0:
        return always
    return max(always, minimum, math.ceil(share * active_projects - 1e-9))


def bound_wanted(projects_with_work: Mapping[str, set[str]], max_per_user: int) -> dict[str, int]:
    """Bound workers each user needs: one per project with a command queued or running."""
    return {
        user: min(len(projects), max_per_user)
        for user, projects in projects_with_work.items()
        if projects
    }


@dataclass(frozen=True)
class Plan:
    bind: dict[str, list[str]]
    """user → idle reserve workers to bind to them now."""
    launch_bound: dict[str, int]
    """user → workers to start already bound to them."""
    launch_reserve: int
    """Unbound workers to start for the reserve."""


def plan(
    wanted: Mapping[str, int],
    bound: Mapping[str, int],
    idle_reserve: Iterable[str],
    starting_reserve: int,
    reserve: int,
    live: int,
    max_tasks: int,
) -> Plan:
    """Who gets a worker now: each user short of ``wanted`` (``bound`` they have, starting
    ones included) takes idle reserve workers (``idle_reserve``, newest idle first), then new
    bound workers; what is left of the fleet's ``max_tasks`` (``live`` tasks now) tops the
    unbound reserve (idle + ``starting_reserve``) up to ``reserve``. Users are served in
    order of their shortfall, largest first, so the ceiling cuts the most-served users."""
    free = list(idle_reserve)
    room = max(0, max_tasks - live)
    bind: dict[str, list[str]] = {}
    launch_bound: dict[str, int] = {}
    short = {user: n - bound.get(user, 0) for user, n in wanted.items()}
    for user in sorted((u for u, n in short.items() if n > 0), key=lambda u: (-short[u], u)):
        need = short[user]
        taken, free = free[:need], free[need:]
        if taken:
            bind[user] = taken
        starting = min(need - len(taken), room)
        if starting > 0:
            launch_bound[user] = starting
            room -= starting
    unbound = len(free) + starting_reserve
    return Plan(bind, launch_bound, min(room, max(0, reserve - unbound)))


def may_leave(me: str, idle: dict[str, float], reserve: int) -> bool:
    """Whether reserve worker ``me``, idle past ``idle_seconds``, leaves: ``idle`` maps each
    idle reserve worker (``me`` included) to when it became idle. Only the surplus over the
    reserve leaves, longest idle first, so two workers never both leave for one surplus."""
    surplus = len(idle) - reserve
    if surplus <= 0:
        return False
    return me in sorted(idle, key=lambda name: (idle[name], name))[:surplus]
