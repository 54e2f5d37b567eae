"""WebSocket routes: ``$connect`` (opened with a ticket, ``live.authorizer``), ``$disconnect``
and ``$default``.

A connection hears its user's topic (session status); ``subscribe`` adds a topic its user was
granted (a terminal's output). A connection opened with one topic's ticket (a browser's) hears
that topic and may send nothing. This function knows no capability: grants come from the
capabilities through ``shared.live``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

if TYPE_CHECKING:  # loaded on the first event: settings, the store and boto3
    from live.config import LiveConfig
    from shared.live import ConnectionStore, Ticket

logger = Logger()
metrics = Metrics()

Action = Callable[["ConnectionStore", str, str, dict[str, Any]], dict[str, Any]]


@cache
def config() -> LiveConfig:
    from live.config import LiveConfig

    return LiveConfig.from_env()


@cache
def store() -> ConnectionStore:
    import boto3  # on first use: the import is a third of a cold start

    from shared.live import ConnectionStore

    table = boto3.resource("dynamodb").Table(config().connections_table)
    return ConnectionStore(table, time.time)


TOPIC_PATTERN = r"^[a-z]{1,32}:[a-z0-9-]{1,63}(:[a-z0-9-]{1,63}){0,3}$"


def subscribe(
    connections: ConnectionStore, connection_id: str, user: str, message: dict[str, Any]
) -> dict[str, Any]:
    """``{"action": "subscribe", "topic": "terminal:<project>:<terminal>"}``: hear a topic.
    Only a user its scope was granted to may; any other looks like no topic at all."""
    topic = message.get("topic")
    if not isinstance(topic, str) or not re.fullmatch(TOPIC_PATTERN, topic):
        return respond(
            400,
            {
                "error": {
                    "code": "invalid_request",
                    "message": "topic must look like terminal:<project>:<terminal>",
                }
            },
        )
    if not connections.may_subscribe(topic, user):
        return respond(404, {"error": {"code": "not_found", "message": "topic not found"}})
    connections.subscribe(connection_id, topic)
    return respond(200, {"subscribed": topic})


ACTIONS: dict[str, Action] = {"subscribe": subscribe}


def respond(status: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body or {})}


def ticket_of(context: dict[str, Any]) -> Ticket | None:
    """What the authorizer let in (its context: the ticket's user and topic)."""
    from shared.live import Ticket

    granted = context.get("authorizer") or {}
    user = granted.get("user")
    if not isinstance(user, str) or not user:
        return None
    return Ticket(user, granted.get("topic") or None)


def route(event: dict[str, Any], connections: ConnectionStore) -> dict[str, Any]:
    context = event.get("requestContext") or {}
    route_key = context.get("routeKey")
    connection_id = context.get("connectionId") or ""
    if route_key == "$connect":
        ticket = ticket_of(context)
        if ticket is None:
            return respond(401, {"error": {"code": "unauthenticated", "message": "no ticket"}})
        connections.connect(connection_id, ticket)
        return respond(200)
    if route_key == "$disconnect":
        connections.disconnect(connection_id)
        return respond(200)
    connection = connections.connection(connection_id)
    if connection is None:
        return respond(401, {"error": {"code": "unauthenticated", "message": "not connected"}})
    if connection.listen_only:
        return respond(
            403,
            {
                "error": {
                    "code": "listen_only",
                    "message": f"this connection only hears {connection.listen_only}",
                }
            },
        )
    user = connection.user
    try:
        message = json.loads(event.get("body") or "{}")
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return respond(400, {"error": {"code": "invalid_request", "message": "send a JSON object"}})
    action = ACTIONS.get(str(message.get("action")))
    if action is None:
        known = ", ".join(sorted(ACTIONS)) or "none yet"
        return respond(
            400, {"error": {"code": "unknown_action", "message": f"known actions: {known}"}}
        )
    return action(connections, connection_id, user, message)


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return route(event, store())
