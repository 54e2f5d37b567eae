"""Live updates, the platform part every capability uses: WebSocket connections, what they
listen to, who may listen, and publishing to them.

Everything a client can hear is a topic, ``<kind>:<scope>[:<more>]``. Every connection hears
``user:<its user>``; any other topic it subscribes to explicitly, which is allowed when the
topic's scope (``<kind>:<scope>``) was granted to its user by the capability that owns it
(the workers grant ``terminal:<project>`` to a project's owner). Items:

- ``pk = CONN#<id>, sk = META``: the connection's user and topics;
- ``pk = TOPIC#<topic>, sk = <connection id>``: one subscription;
- ``pk = GRANT#<scope>, sk = GRANT``: who may subscribe to the scope's topics.

Connection items expire (TTL ``expires_at``) shortly after API Gateway's 2-hour connection
limit; grants stay as long as what they grant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from shared.pagination import query_items

logger = Logger(child=True)

CONNECTION_LIFETIME_SECONDS = 2 * 3600 + 300


def user_topic(user: str) -> str:
    return f"user:{user}"


def scope_of(topic: str) -> str:
    """``terminal:demo:t1`` → ``terminal:demo``."""
    return ":".join(topic.split(":")[:2])


class ConnectionStore:
    def __init__(self, table: Any, clock: Callable[[], float]) -> None:
        self.table = table
        self.clock = clock

    def connect(self, connection_id: str, user: str) -> None:
        expires = int(self.clock()) + CONNECTION_LIFETIME_SECONDS
        self.table.put_item(
            Item={
                "pk": f"CONN#{connection_id}",
                "sk": "META",
                "user": user,
                "topics": [],
                "expires_at": expires,
            }
        )
        self.subscribe(connection_id, user_topic(user))

    def user_of(self, connection_id: str) -> str | None:
        item = self.table.get_item(Key={"pk": f"CONN#{connection_id}", "sk": "META"}).get("Item")
        return str(item["user"]) if item else None

    def subscribe(self, connection_id: str, topic: str) -> None:
        expires = int(self.clock()) + CONNECTION_LIFETIME_SECONDS
        self.table.put_item(
            Item={"pk": f"TOPIC#{topic}", "sk": connection_id, "expires_at": expires}
        )
        self.table.update_item(
            Key={"pk": f"CONN#{connection_id}", "sk": "META"},
            UpdateExpression="SET topics = list_append(if_not_exists(topics, :empty), :t)",
            ExpressionAttributeValues={":t": [topic], ":empty": []},
        )

    def disconnect(self, connection_id: str) -> None:
        meta = self.table.get_item(Key={"pk": f"CONN#{connection_id}", "sk": "META"}).get("Item")
        topics = list(meta.get("topics") or []) if meta else []
        with self.table.batch_writer() as batch:
            for topic in set(topics):
                batch.delete_item(Key={"pk": f"TOPIC#{topic}", "sk": connection_id})
            batch.delete_item(Key={"pk": f"CONN#{connection_id}", "sk": "META"})

    def grant(self, scope: str, user: str) -> None:
        """Lets ``user`` subscribe to every topic of ``scope`` (the owning capability's call)."""
        self.table.put_item(Item={"pk": f"GRANT#{scope}", "sk": "GRANT", "user": user})

    def may_subscribe(self, topic: str, user: str) -> bool:
        item = self.table.get_item(
            Key={"pk": f"GRANT#{scope_of(topic)}", "sk": "GRANT"}, ConsistentRead=True
        ).get("Item")
        return bool(item) and item.get("user") == user

    def subscribers(self, topic: str) -> list[str]:
        condition = Key("pk").eq(f"TOPIC#{topic}")
        return [
            str(item["sk"]) for item in query_items(self.table, KeyConditionExpression=condition)
        ]


class Publisher:
    """Sends JSON messages to every connection on a topic; forgets connections that are gone."""

    def __init__(self, store: ConnectionStore, management: Any, forget_gone: bool = True) -> None:
        """``forget_gone``: remove a connection that is gone (a publisher that may only read
        subscriptions skips it; ``$disconnect`` forgets it)."""
        self.store = store
        self.management = management
        self.forget_gone = forget_gone

    def publish(self, topic: str, message: dict[str, Any]) -> int:
        data = json.dumps(message, separators=(",", ":")).encode()
        delivered = 0
        for connection_id in self.store.subscribers(topic):
            try:
                self.management.post_to_connection(ConnectionId=connection_id, Data=data)
                delivered += 1
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in {"GoneException", "410"}:
                    if self.forget_gone:
                        self.store.disconnect(connection_id)
                else:
                    logger.warning(
                        "push failed", extra={"connection_id": connection_id, "code": code}
                    )
        return delivered
