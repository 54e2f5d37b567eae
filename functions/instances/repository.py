"""The instances table: ``pk`` = id (indexed ``by_user``), plus ``COUNT#<user>`` for the limit.

Creating a record and leaving the live phases change the count in the same transaction.
"""

from __future__ import annotations

from typing import Any

from instances.models import Instance
from shared.pagination import query_page
from shared.records import to_item
from shared.transactions import StaleRecord, commit, count, counted, guarded_put

__all__ = ["InstanceRepository", "QuotaFull", "StaleRecord"]

BY_USER = "by_user_created"


class QuotaFull(Exception):
    pass


def count_key(user: str) -> str:
    return f"COUNT#{user}"


class InstanceRepository:
    def __init__(self, table: Any) -> None:
        self.table = table
        self.client = table.meta.client
        self.name = table.name

    def get(self, instance_id: str) -> Instance | None:
        item = self.table.get_item(Key={"pk": instance_id}, ConsistentRead=True).get("Item")
        return Instance.from_record(item) if item else None

    def list_for_user(
        self, user: str, limit: int, token: str | None
    ) -> tuple[list[Instance], str | None]:
        items, next_token = query_page(
            self.table, BY_USER, ("user", user), limit=limit, token=token
        )
        return [Instance.from_record(item) for item in items], next_token

    def create(self, instance: Instance, max_live: int) -> None:
        """Stores a new instance, or raises ``QuotaFull``."""
        put = {
            "Put": {
                "TableName": self.name,
                "Item": self._record(instance),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        try:
            commit(
                self.client,
                [put, count(self.name, count_key(instance.user), 1, limit=max_live)],
                instance.id,
            )
        except StaleRecord:
            raise QuotaFull() from None

    def live_count(self, user: str) -> int:
        """The user's instances still counted against the limit (what ``create`` bounds)."""
        return counted(self.table, count_key(user))

    def replace(self, old: Instance, new: Instance) -> None:
        """Writes ``new`` if the stored status is still ``old``'s; frees the slot on leaving
        the live phases."""
        items = [guarded_put(self.name, self._record(new), old.status.value)]
        if old.status.live and not new.status.live:
            items.append(count(self.name, count_key(old.user), -1))
        commit(self.client, items, old.id)

    @staticmethod
    def _record(instance: Instance) -> dict[str, Any]:
        return to_item(instance.id, instance.to_record())
