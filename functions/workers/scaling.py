"""How many workers to run: pure functions, so the scaler and the simulation use the same code.

Seed 004's orchestrator (every 30 s): ``desired = min(max(ceil(depth / messages_per_task),
min_tasks), max_tasks)`` and launch ``desired - running``, where ``depth`` is the visible
backlog and ``running`` the tasks already running.

berth's policy (``berth_launch``) keeps the same limits but counts what a new worker can
still change: it takes about a minute to start, so it only helps the backlog that the workers
already running or starting cannot reach in that minute. Starting tasks count as capacity
(the same backlog is never answered twice while its workers boot), in-flight messages occupy
their workers (concurrency 1), and the scaler runs when a command is queued as well as on its
schedule, so a backlog never waits for the next tick to get its first worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    messages_per_task: int
    min_tasks: int
    max_tasks: int

    def __post_init__(self) -> None:
        if self.messages_per_task < 1 or self.min_tasks < 0 or self.max_tasks < self.min_tasks:
            raise ValueError(f"invalid scaling limits {self}")


@dataclass(frozen=True)
class Observed:
    visible: int
    """Messages waiting (SQS ApproximateNumberOfMessages)."""
    in_flight: int
    """Messages being worked on (ApproximateNumberOfMessagesNotVisible)."""
    running: int
    """Worker tasks that have started."""
    starting: int = 0
    """Worker tasks launched but not started yet (PROVISIONING/PENDING)."""


def seed_004_desired(observed: Observed, limits: Limits) -> int:
    """Seed 004's formula, as written: only the queue depth, only running tasks."""
    wanted = math.ceil(observed.visible / limits.messages_per_task)
    return min(max(wanted, limits.min_tasks), limits.max_tasks)


def seed_004_launch(observed: Observed, limits: Limits) -> int:
    return max(0, seed_004_desired(observed, limits) - observed.running)


def berth_launch(
    observed: Observed, limits: Limits, *, start_delay: float, expected_seconds: float
) -> int:
    """How many tasks to start now.

    A new worker only helps messages that would otherwise wait longer than it takes to
    start one, so berth launches for the backlog work that the workers already running or
    starting cannot reach within ``start_delay`` — each new one sized to take
    ``messages_per_task`` messages of ``expected_seconds`` each. A backlog with no worker at
    all always gets one (scale from zero).
    """
    capacity_now = observed.running + observed.starting
    backlog_work = observed.visible * expected_seconds
    idle = max(0, observed.running - observed.in_flight)
    reach = (
        idle * start_delay
        + observed.in_flight * max(0.0, start_delay - expected_seconds / 2)
        + observed.starting * start_delay / 2
    )
    shortfall = backlog_work - reach
    launch = (
        math.ceil(shortfall / (limits.messages_per_task * expected_seconds)) if shortfall > 0 else 0
    )
    if observed.visible and capacity_now == 0:
        launch = max(launch, 1)
    launch = max(launch, limits.min_tasks - capacity_now)
    return max(0, min(launch, limits.max_tasks - capacity_now))
