"""How many workers to run: pure functions, so the scaler and the simulation use the same code.

The hand-written orchestrator berth replaces polled every 30 s and computed
``desired = min(max(ceil(depth / messages_per_task), min_tasks), max_tasks)``, launching
``desired - running``, where ``depth`` is the visible backlog and ``running`` the tasks
already running (``depth_*`` below, kept to compare against).

berth runs the commands of one project one at a time, in order (one SQS FIFO message group
per project), so a project can use at most one worker at a time, and a project whose command
runs keeps its worker busy however many commands wait behind it. berth's policy
(``berth_launch``) therefore sizes the fleet to the *projects* with work — QUEUED or RUNNING
commands — not to the messages: one worker per such project, between ``min_tasks`` and
``max_tasks``. Capacity is the worker tasks that are alive (running, or starting — a
starting task already answers the demand that launched it); a task that died is gone from
ECS, and the command it held comes back once its lease runs out. The scaler runs when a
command is queued as well as on its schedule, so new work never waits for the next tick.

In a terminal a person types a command, reads, types the next. A command queued while its
project has nothing queued or running, within ``keep_warm_seconds`` of its last command's
end, is a *follow-up* (``is_follow_up``): its person is at the terminal. A project that sent
one lately (among its commands QUEUED, RUNNING or ended within ``keep_warm_seconds``) is
*interactive*. berth holds a *reserve* of idle workers (``warm_reserve``): a share of the
interactive projects plus a smaller share of the other projects active lately — any worker
serving any project, rather than a worker per project: most of those people are reading,
and a worker booted for each would mostly idle. Follow-ups travel in a lane (queue) of their
own, and a share of the interactive projects (``held_for_follow_ups``) is the number of idle
workers that take from that lane only (``is_held``: the longest idle ones): a burst or
a new project can take the other idle workers, never the last ones a person typing needs —
they get a worker of their own instead, which every scaler run starts. The scaler publishes
the reserve and the held count; an idle worker leaves only while the fleet has more idle
workers than the reserve (``may_leave``), so the fleet shrinks to the reserve, then to zero
once no project is warm. A worker busy with a command that began a moment ago is likely back
in the reserve before a new one could boot, so the scaler counts a project's worker as taken
only while the project waits for one (``lasting_projects``): commands queued, none running —
or once its command has run ``RETURNS_WITHIN_SECONDS`` (half the workers it used to start
for the reserve never served a command).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

RETURNS_WITHIN_SECONDS = 30
"""A command running for less than this is likely to end, and hand its worker back to the
reserve, before a worker started now could boot (about a minute on Fargate)."""


class Lane(StrEnum):
    """The queue a command travels in : a project's unfinished commands
    are all in one lane, so they still run one at a time, in order."""

    COMMANDS = "commands"
    FOLLOW_UPS = "follow_ups"
    """Commands queued while the project had nothing else queued or running, within
    ``workers.keep_warm_seconds`` of its last command's end: some idle workers take only
    these."""


QUEUED = "queued"
"""The ``reason`` of a scaler run woken by a queued command (its scheduled runs have none)."""


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
class Limits:
    min_tasks: int
    max_tasks: int
    messages_per_task: int = 2
    """Only the old orchestrator's formula uses it."""

    def __post_init__(self) -> None:
        if self.messages_per_task < 1 or self.min_tasks < 0 or self.max_tasks < self.min_tasks:
            raise ValueError(f"invalid scaling limits {self}")


@dataclass(frozen=True)
class Observed:
    running: int
    """Worker tasks that have started."""
    starting: int = 0
    """Worker tasks launched but not started yet (PROVISIONING/PENDING)."""
    projects: int = 0
    """Projects with a command QUEUED or RUNNING (each can use one worker)."""
    visible: int = 0
    """Messages waiting (SQS ApproximateNumberOfMessages): the old formula's input."""
    reserve: int = 0
    """Idle workers to hold on top of one per project with work (``warm_reserve``)."""


def depth_desired(observed: Observed, limits: Limits) -> int:
    """The old orchestrator's formula, as written: only the queue depth, only running tasks."""
    wanted = math.ceil(observed.visible / limits.messages_per_task)
    return min(max(wanted, limits.min_tasks), limits.max_tasks)


def depth_launch(observed: Observed, limits: Limits) -> int:
    return max(0, depth_desired(observed, limits) - observed.running)


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
