"""Opaque ``next_token``s for DynamoDB listings, good only for the listing that issued them
(the same owner or project: a token is refused anywhere else)."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterator
from typing import Any

from shared.errors import Invalid


class InvalidToken(Invalid):
    """A ``next_token`` the API did not issue (for a listing, or a log stream's page)."""

    def __init__(self) -> None:
        super().__init__("next_token is not a token this API issued")


def encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode().rstrip("=")


def _encode_key(key: dict[str, Any]) -> str:
    from boto3.dynamodb.types import TypeSerializer  # boto3 on first use, not at import

    typed = {name: TypeSerializer().serialize(value) for name, value in key.items()}
    return encode_token(typed)


def _decode_key(token: str, partition: tuple[str, str], keys: Collection[str]) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        typed = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken() from exc
    if not isinstance(typed, dict) or set(typed) != set(keys):
        raise InvalidToken()
    for value in typed.values():
        if (
            not isinstance(value, dict)
            or len(value) != 1
            or not set(value) <= {"S", "N"}
            or not all(isinstance(v, str) for v in value.values())
        ):
            raise InvalidToken()
    from boto3.dynamodb.types import TypeDeserializer

    try:
        key = {name: TypeDeserializer().deserialize(value) for name, value in typed.items()}
    except (ValueError, ArithmeticError) as exc:
        raise InvalidToken() from exc
    if key.get(partition[0]) != partition[1]:
        raise InvalidToken()  # a token from another listing
    return key


def query_page(
    table: Any,
    index: str,
    partition: tuple[str, str],
    *,
    sort_key: str = "created_at",
    limit: int,
    token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an index's items under ``partition`` (attribute, value), newest first by
    ``sort_key``. The ``next_token`` is good only for the same listing."""
    name, value = partition
    query: dict[str, Any] = {
        "IndexName": index,
        "KeyConditionExpression": "#k = :k",
        "ExpressionAttributeNames": {"#k": name},
        "ExpressionAttributeValues": {":k": value},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if token:
        query["ExclusiveStartKey"] = _decode_key(token, partition, ("pk", name, sort_key))
    response = table.query(**query)
    last = response.get("LastEvaluatedKey")
    return list(response.get("Items", [])), _encode_key(last) if last else None


def query_items(table: Any, **query: Any) -> Iterator[dict[str, Any]]:
    """Every item a ``Query`` finds, page after page (DynamoDB answers at most 1 MB at once)."""
    while True:
        response = table.query(**query)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        query["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def query_all(table: Any, index: str, attribute: str, value: str) -> list[dict[str, Any]]:
    """Every item of ``index`` whose partition ``attribute`` is ``value``, all pages (for the
    small worklists schedules read: active sessions and commands, a warm pool)."""
    return list(
        query_items(
            table,
            IndexName=index,
            KeyConditionExpression="#a = :v",
            ExpressionAttributeNames={"#a": attribute},
            ExpressionAttributeValues={":v": value},
        )
    )
