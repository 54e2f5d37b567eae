"""Warm pools: tasks of a profile started before anyone asks, so ``POST /sessions`` answers
RUNNING at once. Pure logic here (the windows, what the pool needs); the repository claims,
the service launches.

A warm task is a profile's task started without a session. Its item (``pk = WARM#<task>``)
carries ``pooled = <profile>`` while nobody has claimed it — the sparse ``warm_pool`` index
lists exactly the unclaimed ones — and its address once it runs. Claiming removes ``pooled``
on the condition that it is still there, in the same transaction that makes the session
RUNNING: two callers never get the same task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.records import Record
from shared.windows import Window

WARM_STARTED_BY = "berth-warm"
"""ECS ``startedBy`` of every warm task (a session's task has ``berth:<session id>``)."""
ORPHAN_GRACE_SECONDS = 120
"""A warm task with no item is stopped only when older than this (its item may be on its way)."""


def wanted(size: int, windows: Sequence[str], now: float) -> int:
    """How many unclaimed warm tasks a profile should have now."""
    if size <= 0:
        return 0
    if windows and not any(Window.parse(w).contains(now) for w in windows):
        return 0
    return size


@dataclass(frozen=True)
class WarmTask(Record):
    task_arn: str
    profile: str
    warm_since: float
    private_ip: str | None = None
    claimed_by: str | None = None

    @property
    def ready(self) -> bool:
        return self.private_ip is not None and self.claimed_by is None


@dataclass(frozen=True)
class PoolPlan:
    retire: list[WarmTask]
    launch: int


def plan(size: int, pool: Sequence[WarmTask], now: float, max_warm_seconds: float) -> PoolPlan:
    """What keeps a profile's pool at ``size``: retire tasks warm too long (and any over the
    size, oldest first), launch the difference."""
    expired = [t for t in pool if now - t.warm_since >= max_warm_seconds]
    kept = sorted((t for t in pool if t not in expired), key=lambda t: t.warm_since)
    surplus = kept[: max(0, len(kept) - size)]
    return PoolPlan(retire=expired + surplus, launch=max(0, size - len(kept) + len(surplus)))
