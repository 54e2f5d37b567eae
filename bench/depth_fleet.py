"""The hand-written orchestrator berth replaces, kept only to compare against in the
simulation (``bench/scaling_sim.py``): it polled every 30 s and sized the fleet to the queue
depth alone, ``desired = min(max(ceil(depth / messages_per_task), min_tasks), max_tasks)``,
counting only running tasks. Not deployed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
    """What the old orchestrator saw."""

    running: int
    visible: int = 0
    """Messages waiting (SQS ApproximateNumberOfMessages)."""


def depth_desired(observed: Observed, limits: Limits) -> int:
    """The old orchestrator's formula, as written: only the queue depth, only running tasks."""
    wanted = math.ceil(observed.visible / limits.messages_per_task)
    return min(max(wanted, limits.min_tasks), limits.max_tasks)


def depth_launch(observed: Observed, limits: Limits) -> int:
    return max(0, depth_desired(observed, limits) - observed.running)
