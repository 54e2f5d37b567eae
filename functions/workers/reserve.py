"""The worker fleet's records in the workers table.

- ``pk = FLEET``: the reserve the scaler last published, each idle reserve worker
  (``idle:<worker>``: since when it is idle, when it last said so) and each bound worker
  (``bound:<worker>``: its user, when it was last seen). The scaler sizes the fleet from it;
  an idle reserve worker past ``idle_seconds`` reads it to decide whether it leaves
  (``workers.scaling.may_leave``). It is advice for scaling, nothing more.
- ``pk = BIND#<worker>``: the one binding of a worker task, written once, by a conditional
  put that never overwrites: by the scaler (``bind``: the worker's user, for its whole life),
  or by an unbound worker that leaves (``leave_unbound``: a tombstone). Whoever writes first
  wins, so a worker leaving at the moment it is bound either serves that user or was never
  theirs. This item, not ``FLEET``, is what a worker's user is.

Stale parts count as nothing, so a stopped scaler or a vanished worker cannot hold workers
forever: a reserve not republished within ``RESERVE_SECONDS`` is 0, and a worker that has
not said it is idle or bound within ``SEEN_SECONDS`` is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from shared.records import number

FLEET_KEY = "FLEET"
BIND_PREFIX = "BIND#"
IDLE_PREFIX = "idle:"
BOUND_PREFIX = "bound:"
LEFT = "-"
"""The ``user`` of a worker that left before anyone bound it."""
RESERVE_SECONDS = 180
"""The scaler republishes every minute while workers live; three missed runs void it."""
SEEN_SECONDS = 60
"""A worker says it is idle or bound at least every 20 s."""


def bind_key(worker: str) -> str:
    return f"{BIND_PREFIX}{worker}"


@dataclass(frozen=True)
class FleetView:
    reserve: int
    idle: dict[str, float]
    """Each idle reserve worker seen lately, and since when it is idle."""
    bound: dict[str, str]
    """Each bound worker seen lately (starting ones included), and its user."""

    def among(self, live: set[str]) -> FleetView:
        """Only the workers whose tasks are ``live``."""
        return FleetView(
            reserve=self.reserve,
            idle={w: since for w, since in self.idle.items() if w in live},
            bound={w: user for w, user in self.bound.items() if w in live},
        )

    def bound_per_user(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for user in self.bound.values():
            counts[user] = counts.get(user, 0) + 1
        return counts


class FleetRegistry:
    def __init__(self, table: Any) -> None:
        """``table`` is a boto3 ``dynamodb.Table`` (resource API)."""
        self.table = table
        self.client = table.meta.client  # the resource's: plain Python values

    # --- the scaler ---------------------------------------------------------------------------

    def publish_reserve(self, reserve: int, now: float) -> None:
        self.table.update_item(
            Key={"pk": FLEET_KEY},
            UpdateExpression="SET reserve = :r, reserve_at = :now",
            ExpressionAttributeValues={":r": reserve, ":now": number(now)},
        )

    def bind(self, worker: str, user: str, now: float) -> bool:
        """Binds ``worker`` (idle in the reserve, or just started) to ``user`` for its whole
        life; False if it already has a binding (or left)."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table.name,
                            "Item": {
                                "pk": bind_key(worker),
                                "user": user,
                                "bound_at": number(now),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table.name,
                            "Key": {"pk": FLEET_KEY},
                            "UpdateExpression": "SET #b = :entry REMOVE #i",
                            "ExpressionAttributeNames": {
                                "#b": BOUND_PREFIX + worker,
                                "#i": IDLE_PREFIX + worker,
                            },
                            "ExpressionAttributeValues": {
                                ":entry": {"user": user, "seen": number(now)}
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise
        return True

    # --- a worker -----------------------------------------------------------------------------

    def binding_of(self, worker: str) -> str | None:
        """The user ``worker`` is bound to, ``LEFT``, or None while unbound."""
        item = self.table.get_item(Key={"pk": bind_key(worker)}, ConsistentRead=True).get("Item")
        return str(item["user"]) if item else None

    def bound_since(self, worker: str) -> tuple[str, float] | None:
        """``(user, bound at)`` of a worker bound to a user; None if never bound."""
        item = self.table.get_item(Key={"pk": bind_key(worker)}, ConsistentRead=True).get("Item")
        if not item or item.get("user") in (None, LEFT) or "bound_at" not in item:
            return None
        return str(item["user"]), float(item["bound_at"])

    def leave_unbound(self, worker: str, now: float) -> bool:
        """An unbound worker leaving: True if it left for good, False if it was bound first
        (then it serves its user)."""
        try:
            self.table.put_item(
                Item={"pk": bind_key(worker), "user": LEFT, "bound_at": number(now)},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def idle(self, worker: str, since: float, now: float) -> None:
        """Reserve worker ``worker`` is idle since ``since`` (said again at ``now``)."""
        self._set(IDLE_PREFIX + worker, {"since": number(since), "seen": number(now)})

    def alive(self, worker: str, user: str, now: float) -> None:
        """Bound worker ``worker`` (of ``user``) is alive at ``now``."""
        self._set(BOUND_PREFIX + worker, {"user": user, "seen": number(now)})

    def gone(self, worker: str) -> None:
        """``worker`` leaves (or, bound, is about to): no longer counted."""
        self.table.update_item(
            Key={"pk": FLEET_KEY},
            UpdateExpression="REMOVE #i, #b",
            ExpressionAttributeNames={"#i": IDLE_PREFIX + worker, "#b": BOUND_PREFIX + worker},
        )

    def _set(self, name: str, entry: dict[str, Any]) -> None:
        self.table.update_item(
            Key={"pk": FLEET_KEY},
            UpdateExpression="SET #w = :entry",
            ExpressionAttributeNames={"#w": name},
            ExpressionAttributeValues={":entry": entry},
        )

    # --- both ---------------------------------------------------------------------------------

    def view(self, now: float) -> FleetView:
        item = self.table.get_item(Key={"pk": FLEET_KEY}, ConsistentRead=True).get("Item") or {}
        fresh = float(item.get("reserve_at", 0)) > now - RESERVE_SECONDS

        def seen(entry: Any) -> bool:
            return float(entry["seen"]) > now - SEEN_SECONDS

        return FleetView(
            reserve=int(item.get("reserve", 0)) if fresh else 0,
            idle={
                name.removeprefix(IDLE_PREFIX): float(entry["since"])
                for name, entry in item.items()
                if name.startswith(IDLE_PREFIX) and seen(entry)
            },
            bound={
                name.removeprefix(BOUND_PREFIX): str(entry["user"])
                for name, entry in item.items()
                if name.startswith(BOUND_PREFIX) and seen(entry)
            },
        )
