"""The warm reserve's one item in the workers table (``pk = FLEET``): the reserve the scaler
last published, how many idle workers take follow-ups only (``held``), and each idle worker
(``idle:<worker>``: since when it is idle, when it last said so). An idle worker past
``idle_seconds`` reads it to decide whether it leaves (``workers.scaling.may_leave``), and
before each poll to know whether it takes follow-ups only (``workers.scaling.is_held``).

Stale parts count as nothing, so a stopped scaler or a vanished worker cannot hold workers
forever: a reserve not republished within ``RESERVE_SECONDS`` is 0, and a worker that has
not said it is idle within ``IDLE_SEEN_SECONDS`` is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.records import number

FLEET_KEY = "FLEET"
IDLE_PREFIX = "idle:"
RESERVE_SECONDS = 180
"""The scaler republishes every minute while workers live; three missed runs void it."""
IDLE_SEEN_SECONDS = 60
"""An idle worker says so at least every ``idle_seconds`` (at most 20 s)."""


@dataclass(frozen=True)
class FleetView:
    reserve: int
    held: int
    idle: dict[str, float]
    """Each idle worker, fresh ones only, and since when it is idle."""


class FleetRegistry:
    def __init__(self, table: Any) -> None:
        """``table`` is a boto3 ``dynamodb.Table`` (resource API)."""
        self.table = table

    def publish_reserve(self, reserve: int, held: int, now: float) -> None:
        self.table.update_item(
            Key={"pk": FLEET_KEY},
            UpdateExpression="SET reserve = :r, held = :h, reserve_at = :now",
            ExpressionAttributeValues={":r": reserve, ":h": held, ":now": number(now)},
        )

    def idle(self, worker: str, since: float, now: float) -> None:
        """``worker`` is idle since ``since`` (said again at ``now``)."""
        self.table.update_item(
            Key={"pk": FLEET_KEY},
            UpdateExpression="SET #w = :entry",
            ExpressionAttributeNames={"#w": IDLE_PREFIX + worker},
            ExpressionAttributeValues={
                ":entry": {
                    "since": number(since),
                    "seen": number(now),
                }
            },
        )

    def busy(self, worker: str) -> None:
        """``worker`` took a command, or leaves: no longer idle."""
        self.table.update_item(
            Key={"pk": FLEET_KEY},
            UpdateExpression="REMOVE #w",
            ExpressionAttributeNames={"#w": IDLE_PREFIX + worker},
        )

    def view(self, now: float) -> FleetView:
        item = self.table.get_item(Key={"pk": FLEET_KEY}, ConsistentRead=True).get("Item") or {}
        fresh = float(item.get("reserve_at", 0)) > now - RESERVE_SECONDS
        idle = {
            name.removeprefix(IDLE_PREFIX): float(entry["since"])
            for name, entry in item.items()
            if name.startswith(IDLE_PREFIX) and float(entry["seen"]) > now - IDLE_SEEN_SECONDS
        }
        return FleetView(
            reserve=int(item.get("reserve", 0)) if fresh else 0,
            held=int(item.get("held", 0)) if fresh else 0,
            idle=idle,
        )
