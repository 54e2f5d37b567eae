"""The instances table: ``pk`` = id (indexed ``by_user``), plus ``COUNT#<user>`` for the limit.

Creating a record and leaving the live phases change the count in the same transaction.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from instances.models import Instance
from shared.pagination import query_user_page
from shared.records import to_item

BY_USER = "by_user"


class Conflict(Exception):
    """The record changed since it was read."""


class LimitReached(Exception):
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
        items, next_token = query_user_page(self.table, BY_USER, user, limit, token)
        return [Instance.from_record(item) for item in items], next_token

    def create(self, instance: Instance, max_live: int) -> None:
        """Stores a new instance, or raises ``LimitReached``."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.name,
                            "Item": self._record(instance),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.name,
                            "Key": {"pk": count_key(instance.user)},
                            "UpdateExpression": "ADD live_count :one",
                            "ConditionExpression": (
                                "attribute_not_exists(live_count) OR live_count < :max"
                            ),
                            "ExpressionAttributeValues": {":one": 1, ":max": max_live},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise LimitReached() from None
            raise

    def replace(self, old: Instance, new: Instance) -> None:
        """Writes ``new`` if the stored status is still ``old``'s; frees the slot on leaving
        the live phases."""
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": self._record(new),
                    "ConditionExpression": "#s = :expected",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":expected": old.status.value},
                }
            }
        ]
        if old.status.live and not new.status.live:
            items.append(
                {
                    "Update": {
                        "TableName": self.name,
                        "Key": {"pk": count_key(old.user)},
                        "UpdateExpression": "ADD live_count :minus",
                        "ExpressionAttributeValues": {":minus": -1},
                    }
                }
            )
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                raise Conflict(old.id) from None
            raise

    @staticmethod
    def _record(instance: Instance) -> dict[str, Any]:
        return to_item(instance.id, instance.to_record())
