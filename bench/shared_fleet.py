"""The policy berth ran before a worker task was bound to one tenant — a *shared* fleet, any
worker serving any project, with a warm reserve and a follow-up lane — kept here, beside the
simulation that compares it with the bound fleet that replaced it (``bench/scaling_sim.py``).
Not deployed; only the simulation imports it.

A command queued while its project has nothing queued or running, within
``keep_warm_seconds`` of its last command's end, is a *follow-up* (``is_follow_up``); a
project that sent one lately is *interactive*. The fleet holds a reserve of idle workers
(``warm_reserve``): a share of the interactive projects plus a smaller share of the others;
follow-ups travel in a lane of their own and the ``held_for_follow_ups`` longest idle workers
(``is_held``) take only from it; an idle worker leaves only while the fleet has more idle
workers than the reserve (``may_leave``); the scaler counts a project's worker as taken only
while the project waits for one or its command has run ``RETURNS_WITHIN_SECONDS``
(``lasting_projects``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "functions")]

from bench import depth_fleet  # noqa: E402 - after the path
from bench.depth_fleet import Limits  # noqa: E402

RETURNS_WITHIN_SECONDS = 30


@dataclass(frozen=True)
class Shares:
    """The warm reserve's settings (``workers.*`` in ``infra/settings.py``)."""

    interactive: float
    """Idle workers per interactive project (``warm_reserve_share``)."""
    other: float
    """Idle workers per other project active lately (``other_reserve_share``)."""
    held: float
    """Of those idle workers, how many (per interactive project) take follow-ups only
    (``held_for_follow_ups_share``)."""


@dataclass(frozen=True)
class Observed(depth_fleet.Observed):
    """What the shared fleet's scaler saw (``running``: tasks started; ``visible``: only the
    old orchestrator's formula reads it)."""

    starting: int = 0
    """Worker tasks launched but not started yet (PROVISIONING/PENDING)."""
    projects: int = 0
    """Projects with a command QUEUED or RUNNING (each can use one worker)."""
    reserve: int = 0
    """Idle workers to hold on top of one per project with work (``warm_reserve``)."""


def is_follow_up(
    unfinished: int, last_ended_at: float | None, now: float, keep_warm_seconds: float
) -> bool:
    """Whether a command queued ``now`` is a follow-up: its project has no command queued or
    running (``unfinished``) and its last one ended within ``keep_warm_seconds``."""
    return unfinished <= 0 and last_ended_at is not None and now - last_ended_at < keep_warm_seconds


def interactive_and_others(recent: Iterable[tuple[str, bool]]) -> tuple[set[str], set[str]]:
    """The projects of the ``recent`` commands — (project, whether it was a follow-up), for
    commands queued, running or ended within ``keep_warm_seconds`` — split into the
    interactive ones (a follow-up among them) and the others."""
    commands = list(recent)
    interactive = {project for project, follow_up in commands if follow_up}
    return interactive, {project for project, _ in commands} - interactive


def warm_reserve(interactive: int, others: int, shares: Shares) -> int:
    """Idle workers to hold: ``shares.interactive`` of the ``interactive`` projects plus
    ``shares.other`` of the ``others`` active lately; at least one while that is above 0."""
    wanted = shares.interactive * interactive + shares.other * others
    return max(1, math.ceil(wanted - 1e-9)) if wanted > 0 else 0


def held_for_follow_ups(interactive: int, shares: Shares) -> int:
    """Of the idle workers, how many take follow-ups only."""
    return math.ceil(shares.held * interactive - 1e-9) if interactive > 0 else 0


def lasting_projects(queued: Iterable[str], running: Mapping[str, float], now: float) -> int:
    """The projects whose worker the scheduled top-up counts as taken: ``queued`` ones with
    none of their commands running (they wait for a worker), and those whose command
    (``running``: project → when it started) has run ``RETURNS_WITHIN_SECONDS`` or more."""
    lasting = {p for p, started in running.items() if now - started >= RETURNS_WITHIN_SECONDS}
    return len((set(queued) - set(running)) | lasting)


def held_within(held: int, observed: Observed, limits: Limits) -> int:
    """``held``, or none while the fleet cannot grow to what it wants (``max_tasks``): a
    project waiting in the command queue must never starve beside idle workers kept for
    follow-ups."""
    return 0 if observed.projects + observed.reserve > limits.max_tasks else held


def berth_desired(observed: Observed, limits: Limits) -> int:
    """One worker per project with work, plus the reserve, within the fleet's limits."""
    return min(max(observed.projects + observed.reserve, limits.min_tasks), limits.max_tasks)


def berth_launch(observed: Observed, limits: Limits) -> int:
    """How many tasks to start now: the desired fleet minus the live one (never negative:
    scale-in is each worker's own idle exit, never a kill mid-command)."""
    return max(0, berth_desired(observed, limits) - (observed.running + observed.starting))


def may_leave(me: str, idle: dict[str, float], reserve: int, held: int = 0) -> bool:
    """Whether worker ``me``, idle past ``idle_seconds``, leaves: ``idle`` maps each idle
    worker of the fleet (``me`` included) to when it became idle. Only the surplus over the
    reserve leaves, longest idle first after the ``held`` ones (``is_held``: they stay for
    follow-ups, as part of the reserve), so two workers never both leave for one surplus."""
    surplus = len(idle) - reserve
    if surplus <= 0:
        return False
    staying = max(0, min(held, reserve))
    return me in sorted(idle, key=lambda name: (idle[name], name))[staying:][:surplus]


def is_held(me: str, idle: dict[str, float], held: int) -> bool:
    """Whether idle worker ``me`` takes follow-ups only: it is one of the ``held`` longest idle
    workers of ``idle``. A worker whose command just ended is the newest idle one, so it is
    never held: it takes its project's next command at once (free the moment the one before
    was deleted) instead of waiting for an older worker to notice it is no longer held."""
    return me in sorted(idle, key=lambda name: (idle[name], name))[: max(0, held)]
