"""Live updates, the platform part every capability uses: WebSocket connections, what they
listen to, who may listen, and publishing to them.

Everything a client can hear is a topic, ``<kind>:<scope>[:<more>]``. Every connection hears
``user:<its user>``; any other topic it subscribes to explicitly, which is allowed when the
topic's scope (``<kind>:<scope>``) was granted to its user by the capability that owns it
(the workers grant ``terminal:<project>`` to a project's owner). Items:

- ``pk = CONN#<id>, sk = META``: the connection's user and topics;
- ``pk = TOPIC#<topic>, sk = <connection id>``: one subscription;
- ``pk = GRANT#<scope>, sk = GRANT``: who may subscribe to the scope's topics;
- ``pk = TICKET#<sha-256 of the ticket>, sk = TICKET``: a ticket not yet used (``Tickets``).

A WebSocket connection opens with a ticket, never with AWS keys: the IAM-authenticated REST
API mints one for its caller (``POST /live/tickets``: their topic, and subscribe to what they
were granted) or, for a browser its owner hands it to, for one topic only
(``POST /workspaces/{project}/terminals/{terminal}/connect``: that terminal, listen only).
A ticket opens one connection, once, within seconds of being minted; the table keeps only its
hash, so reading the table yields no ticket.

Connection items expire (TTL ``expires_at``) shortly after API Gateway's 2-hour connection
limit; grants stay as long as what they grant.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

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

    def connect(self, connection_id: str, ticket: Ticket) -> None:
        """A connection opened with ``ticket``: its user's topic, or its one topic only."""
        expires = int(self.clock()) + CONNECTION_LIFETIME_SECONDS
        item: dict[str, Any] = {
            "pk": f"CONN#{connection_id}",
            "sk": "META",
            "user": ticket.user,
            "topics": [],
            "expires_at": expires,
        }
        if ticket.topic:
            item["listen_only"] = ticket.topic
        self.table.put_item(Item=item)
        self.subscribe(connection_id, ticket.topic or user_topic(ticket.user))

    def connection(self, connection_id: str) -> Connection | None:
        item = self.table.get_item(Key={"pk": f"CONN#{connection_id}", "sk": "META"}).get("Item")
        if not item:
            return None
        return Connection(str(item["user"]), item.get("listen_only"))

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


@dataclass(frozen=True)
class Ticket:
    """What a ticket opens: a connection for ``user`` that hears their own topic and may
    subscribe to what they were granted, or (``topic`` set) hears that topic and nothing else."""

    user: str
    topic: str | None = None


@dataclass(frozen=True)
class Connection:
    user: str
    listen_only: str | None = None
    """The one topic a connection opened with a topic's ticket hears; it may do nothing else."""


TICKET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")


class Tickets:
    """Single-use, short-lived tickets that open a WebSocket connection (see the module)."""

    def __init__(self, table: Any, clock: Callable[[], float]) -> None:
        self.table = table
        self.clock = clock

    @staticmethod
    def _key(ticket: str) -> dict[str, str]:
        return {"pk": "TICKET#" + hashlib.sha256(ticket.encode()).hexdigest(), "sk": "TICKET"}

    def mint(self, ticket: Ticket, lifetime_seconds: int) -> tuple[str, int]:
        """A new ticket (32 random bytes, base64url) and when it expires (epoch seconds)."""
        secret = secrets.token_urlsafe(32)
        expires = int(self.clock()) + lifetime_seconds
        item: dict[str, Any] = {**self._key(secret), "user": ticket.user, "expires_at": expires}
        if ticket.topic:
            item["topic"] = ticket.topic
        self.table.put_item(Item=item)
        return secret, expires

    def redeem(self, secret: str) -> Ticket | None:
        """What the ticket opens, once: it is deleted in the same request (a second use, a
        race included, finds nothing); None for an unknown, used or expired ticket."""
        if not TICKET_PATTERN.fullmatch(secret):
            return None
        try:
            old = self.table.delete_item(
                Key=self._key(secret),
                ConditionExpression="attribute_exists(pk)",
                ReturnValues="ALL_OLD",
            ).get("Attributes")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        if not old or int(old["expires_at"]) <= self.clock():
            return None
        return Ticket(str(old["user"]), old.get("topic"))


class TicketOut(BaseModel):
    """A WebSocket URL that opens one connection, once, until ``expires_at``."""

    url: str = Field(description="wss://…?ticket=…: open it within the lifetime, once")
    expires_at: datetime
    topic: str | None = Field(
        None, description="The one topic the connection hears; none: the caller's own"
    )


def ticket_url(tickets: Tickets, ticket: Ticket, websocket_url: str, seconds: int) -> TicketOut:
    secret, expires = tickets.mint(ticket, seconds)
    separator = "&" if "?" in websocket_url else "?"
    return TicketOut(
        url=f"{websocket_url}{separator}{urlencode({'ticket': secret})}",
        expires_at=datetime.fromtimestamp(expires, UTC),
        topic=ticket.topic,
    )


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
