"""WebSocket routes: ``$connect`` (IAM-authenticated), ``$disconnect`` and ``$default``.

Every connection hears its user's session status; capabilities add actions (subscribe to a
terminal) through ``ACTIONS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from live.config import LiveConfig
from live.connections import ConnectionStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()

Action = Callable[[ConnectionStore, str, str, dict[str, Any]], dict[str, Any]]
ACTIONS: dict[str, Action] = {}

_store: ConnectionStore | None = None


def store() -> ConnectionStore:
    global _store
    if _store is None:
        config = LiveConfig.from_env()
        table = boto3.resource("dynamodb").Table(config.connections_table)
        _store = ConnectionStore(table, time.time)
    return _store


def respond(status: int, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body or {})}


def route(event: dict[str, Any], connections: ConnectionStore) -> dict[str, Any]:
    context = event.get("requestContext") or {}
    route_key = context.get("routeKey")
    connection_id = context.get("connectionId") or ""
    if route_key == "$connect":
        user = (context.get("identity") or {}).get("userArn")
        if not user:
            return respond(401, {"error": {"code": "unauthenticated", "message": "no identity"}})
        connections.connect(connection_id, user)
        return respond(200)
    if route_key == "$disconnect":
        connections.disconnect(connection_id)
        return respond(200)
    user = connections.user_of(connection_id)
    if user is None:
        return respond(401, {"error": {"code": "unauthenticated", "message": "not connected"}})
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


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return route(event, store())
