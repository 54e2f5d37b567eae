"""Weekly time windows, ``"mon-fri 07:00-19:00"`` (UTC): when a warm pool is held. A value
type of its own, so settings can check a window when ``cdk synth`` reads them and the sessions
functions can ask whether now is inside one, from one parser."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

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
