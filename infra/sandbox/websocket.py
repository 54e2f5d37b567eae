"""The local stand-in for the WebSocket API and its management API.

Clients open ``ws://127.0.0.1:<port>/?ticket=<ticket>`` with a ticket minted by the REST API
(``POST /live/tickets``, or a terminal's connect URL), as on AWS: the authorizer function the
template names redeems it before the handshake completes (refused: HTTP 403, no connection),
and its context reaches every event of the connection (``requestContext.authorizer``). Each
event goes to the WebSocket function the template routes it to (``$connect``, ``$default``,
``$disconnect``) like API Gateway does. Functions and workers push back through
``POST /@connections/{id}`` (the management API), served by ``ManagementApi``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from infra.sandbox.account import ACCOUNT, REGION

log = logging.getLogger("berth.sandbox")

Invoke = Callable[[dict[str, Any]], Any]
STAGE = "local"
API_ID = "local"


def authorizer_event(query: str) -> dict[str, Any]:
    """A REQUEST authorizer's event for ``$connect``, as API Gateway sends it."""
    parameters = {k: v[0] for k, v in parse_qs(query).items()}
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/$connect",
        "headers": {},
        "queryStringParameters": parameters,
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "stage": STAGE},
    }


def allowed(decision: Any) -> dict[str, Any] | None:
    """The context an authorizer's answer lets in (None: denied)."""
    if not isinstance(decision, dict):
        return None
    statements = (decision.get("policyDocument") or {}).get("Statement") or []
    effects = {str(statement.get("Effect")) for statement in statements}
    if effects != {"Allow"}:
        return None
    return {**(decision.get("context") or {}), "principalId": decision.get("principalId")}


class LocalWebSocketApi:
    def __init__(self, host: str, port: int, invoke: Invoke, authorize: Invoke) -> None:
        self.invoke = invoke
        self.authorize = authorize
        self.connections: dict[str, ServerConnection] = {}
        self._granted: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = serve(self._serve, host, port, process_request=self._handshake)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def start(self) -> LocalWebSocketApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    # --- the management API (called from the REST gateway's HTTP server) ----------------------

    def post(self, connection_id: str, data: bytes) -> bool:
        """False when the connection is gone (API Gateway answers 410 GoneException)."""
        with self._lock:
            connection = self.connections.get(connection_id)
        if connection is None:
            return False
        try:
            connection.send(data.decode("utf-8", "replace"))
        except ConnectionClosed:
            return False
        return True

    # --- one client ---------------------------------------------------------------------------

    def _event(
        self, route: str, connection_id: str, granted: dict[str, Any], body: str | None
    ) -> dict[str, Any]:
        return {
            "requestContext": {
                "routeKey": route,
                "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(
                    route, "MESSAGE"
                ),
                "connectionId": connection_id,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "stage": STAGE,
                "apiId": API_ID,
                "identity": {"sourceIp": "127.0.0.1"},
                "authorizer": granted,
            },
            "body": body,
            "isBase64Encoded": False,
        }

    def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """The authorizer decides before the connection opens; refused: HTTP 403."""
        try:
            granted = allowed(self.authorize(authorizer_event(urlsplit(request.path).query)))
        except Exception:
            log.exception("$connect authorizer failed")
            return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error\n")
        if granted is None:
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        with self._lock:
            self._granted[id(connection)] = granted
        return None

    def _serve(self, connection: ServerConnection) -> None:
        with self._lock:
            granted = self._granted.pop(id(connection), None)
        if granted is None:  # the handshake was refused
            return
        connection_id = uuid.uuid4().hex[:16] + "="
        answer = self.invoke(self._event("$connect", connection_id, granted, None))
        if int(answer.get("statusCode", 500)) != 200:
            connection.close(code=1008, reason="refused")
            return
        with self._lock:
            self.connections[connection_id] = connection
        try:
            for message in connection:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                reply = self.invoke(self._event("$default", connection_id, granted, text))
                if reply and reply.get("body"):
                    connection.send(reply["body"])
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.connections.pop(connection_id, None)
            try:
                self.invoke(self._event("$disconnect", connection_id, granted, None))
            except Exception:
                log.exception("$disconnect failed")
