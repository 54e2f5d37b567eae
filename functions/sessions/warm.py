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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.records import Record

WARM_STARTED_BY = "berth-warm"
"""ECS ``startedBy`` of every warm task (a session's task has ``berth:<session id>``)."""
ORPHAN_GRACE_SECONDS = 120
"""A warm task with no item is stopped only when older than this (its item may be on its way)."""

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WINDOW = re.compile(
    r"^(?P<days>\*|[a-z]{3}(-[a-z]{3})?(,[a-z]{3}(-[a-z]{3})?)*) "
    r"(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)$"
)


@dataclass(frozen=True)
class Window:
    """``"mon-fri 07:00-19:00"`` (UTC): on those days, from start to end (end after start, or
    ``24:00``); ``*`` for every day."""

    days: frozenset[int]
    start: int  # minutes after midnight
    end: int

    @classmethod
    def parse(cls, text: str) -> Window:
        found = WINDOW.fullmatch(text.strip().lower())
        if not found:
            raise ValueError(f"{text!r}: expected '<days> HH:MM-HH:MM', e.g. 'mon-fri 07:00-19:00'")
        days: set[int] = set()
        for part in found["days"].split(","):
            if part == "*":
                days |= set(range(7))
                continue
            first, _, last = part.partition("-")
            if first not in DAYS or (last and last not in DAYS):
                raise ValueError(f"{text!r}: days are {', '.join(DAYS)}")
            a, b = DAYS.index(first), DAYS.index(last or first)
            days |= set(range(a, b + 1)) if a <= b else set(range(a, 7)) | set(range(b + 1))
        start, end = _minutes(found["start"], text), _minutes(found["end"], text)
        if end <= start:
            raise ValueError(f"{text!r}: the window must end after it starts (same day)")
        return cls(frozenset(days), start, end)

    def contains(self, now: float) -> bool:
        moment = datetime.fromtimestamp(now, UTC)
        minute = moment.hour * 60 + moment.minute
        return moment.weekday() in self.days and self.start <= minute < self.end


def _minutes(hh_mm: str, text: str) -> int:
    hours, minutes = int(hh_mm[:2]), int(hh_mm[3:])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(f"{text!r}: {hh_mm} is not a time of day")
    return hours * 60 + minutes


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
