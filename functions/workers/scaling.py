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

In a terminal a person types a command, reads, types the next. A project whose last command
ended within ``keep_warm_seconds`` is *warm*: its next command is likely. berth holds a
*reserve* of idle workers — a share of the projects active lately, with work or warm
(``warm_reserve``), any worker serving any project — rather than a worker per warm project:
most of those people are reading, and a worker booted for each would mostly idle. Counting
the projects with work too keeps the reserve steady while a command runs and ends. The
scaler publishes the reserve; an idle worker leaves only while the fleet has more idle
workers than it (``may_leave``), so the fleet shrinks to the reserve, then to zero once no
project is warm. A run woken by a queued command (``QUEUED``) starts workers for the
projects with work only; the scheduled run tops the reserve up: a reserve worker that took
a command is usually free again well before a new one would have booted. For the same
reason the top-up counts a project's worker as taken only while the project waits for one
(``lasting_projects``): commands queued, none running — or once its command has run
``RETURNS_WITHIN_SECONDS``; a worker whose command began a moment ago is likely back in the
reserve before a new one could boot (half the workers the top-up used to start never served
a command).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

RETURNS_WITHIN_SECONDS = 30
"""A command running for less than this is likely to end, and hand its worker back to the
reserve, before a worker started now could boot (about a minute on Fargate)."""

QUEUED = "queued"
"""The ``reason`` of a scaler run woken by a queued command (its scheduled runs have none)."""


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


def warm_reserve(recent_projects: int, share: float) -> int:
    """Idle workers to hold for ``recent_projects`` (with work, or warm): ``share`` of them,
    at least one while there is any; none with ``share`` 0."""
    if recent_projects <= 0 or share <= 0:
        return 0
    return max(1, math.ceil(share * recent_projects - 1e-9))


def lasting_projects(queued: Iterable[str], running: Mapping[str, float], now: float) -> int:
    """The projects whose worker the scheduled top-up counts as taken: ``queued`` ones with
    none of their commands running (they wait for a worker), and those whose command
    (``running``: project → when it started) has run ``RETURNS_WITHIN_SECONDS`` or more."""
    lasting = {p for p, started in running.items() if now - started >= RETURNS_WITHIN_SECONDS}
    return len((set(queued) - set(running)) | lasting)


def berth_desired(observed: Observed, limits: Limits) -> int:
    """One worker per project with work, plus the reserve, within the fleet's limits."""
    return min(max(observed.projects + observed.reserve, limits.min_tasks), limits.max_tasks)


def berth_launch(observed: Observed, limits: Limits) -> int:
    """How many tasks to start now: the desired fleet minus the live one (never negative:
    scale-in is each worker's own idle exit, never a kill mid-command)."""
    return max(0, berth_desired(observed, limits) - (observed.running + observed.starting))


def may_leave(me: str, idle: dict[str, float], reserve: int) -> bool:
    """Whether worker ``me``, idle past ``idle_seconds``, leaves: ``idle`` maps each idle
    worker of the fleet (``me`` included) to when it became idle. Only the surplus over the
    reserve leaves, longest idle first, so two workers never both leave for one surplus."""
    surplus = len(idle) - reserve
    if surplus <= 0:
        return False
    return me in sorted(idle, key=lambda name: (idle[name], name))[:surplus]
