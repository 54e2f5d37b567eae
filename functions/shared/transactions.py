"""DynamoDB transaction items berth's repositories compose (one table per capability)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

COUNT_ATTRIBUTE = "live_count"


class StaleRecord(Exception):
    """The record changed since it was read (another writer won); re-read and decide again."""


def guarded_put(table: str, item: dict[str, Any], expected_status: str) -> dict[str, Any]:
    """Put ``item`` only if the stored record still has ``expected_status``."""
    return {
        "Put": {
            "TableName": table,
            "Item": item,
            "ConditionExpression": "#s = :expected",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":expected": expected_status},
        }
    }


def count(table: str, key: str, delta: int, limit: int | None = None) -> dict[str, Any]:
    """Add ``delta`` to the counter item ``key``; with ``limit``, only while below it."""
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": key},
        "UpdateExpression": f"ADD {COUNT_ATTRIBUTE} :delta",
        "ExpressionAttributeValues": {":delta": delta},
    }
    if limit is not None:
        update["ConditionExpression"] = (
            f"attribute_not_exists({COUNT_ATTRIBUTE}) OR {COUNT_ATTRIBUTE} < :limit"
        )
        update["ExpressionAttributeValues"][":limit"] = limit
    return {"Update": update}


def counted(table: Any, key: str) -> int:
    """The counter item ``key`` as it stands (a consistent read; 0 if never counted)."""
    item = table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item") or {}
    return int(item.get(COUNT_ATTRIBUTE, 0))


def commit(client: Any, items: list[dict[str, Any]], record_id: str) -> None:
    """Writes all or nothing; a failed condition raises ``StaleRecord``."""
    try:
        client.transact_write_items(TransactItems=items)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "TransactionCanceledException":
            raise StaleRecord(record_id) from None
        raise
