"""The local stand-in for the WebSocket API and its management API.

Clients connect to ``ws://127.0.0.1:<port>/`` with a SigV4-signed handshake (the sandbox's
local credentials, as for REST), or ``X-Berth-User: <name>`` (or ``?user=`` where a browser
cannot set headers). Each
event goes to the WebSocket function the template routes it to (``$connect``,
``$default``, ``$disconnect``) like API Gateway does. Functions and workers push back
through ``POST /@connections/{id}`` (the management API), served by ``ManagementApi``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from infra.sandbox.account import ACCOUNT
from infra.sandbox.events import local_user_arn
from infra.sandbox.gateway import USER_HEADER, USER_PATTERN
from infra.sandbox.sigv4 import (
    SANDBOX_PRINCIPAL,
    BadSignature,
    LocalCredentials,
    Unsigned,
    url_of,
)

log = logging.getLogger("berth.sandbox")

Invoke = Callable[[dict[str, Any]], Any]


class LocalWebSocketApi:
    def __init__(self, host: str, port: int, invoke: Invoke, credentials: LocalCredentials) -> None:
        self.invoke = invoke
        self.credentials = credentials
        self.connections: dict[str, ServerConnection] = {}
        self._lock = threading.Lock()
        self._server = serve(self._serve, host, port)
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
        self, route: str, connection_id: str, user: str | None, body: str | None
    ) -> dict[str, Any]:
        identity: dict[str, Any] = {"sourceIp": "127.0.0.1"}
        if user:
            identity.update(userArn=user, accountId=ACCOUNT)
        return {
            "requestContext": {
                "routeKey": route,
                "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(
                    route, "MESSAGE"
                ),
                "connectionId": connection_id,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "stage": "local",
                "apiId": "local",
                "identity": identity,
            },
            "body": body,
            "isBase64Encoded": False,
        }

    def _caller(self, request: Any) -> str | None:
        """A verified SigV4 handshake, else X-Berth-User or ``?user=`` (a browser); None
        for a bad signature or no identity ($connect then refuses it)."""
        if len(request.headers.get_all("Host")) != 1:
            return None  # ambiguous: refused
        headers = dict(request.headers.raw_items())
        try:
            principal = self.credentials.verify(
                "GET",
                url_of(request.headers.get("Host", ""), request.path),
                headers,
                b"",
                datetime.now(UTC),
            )
        except Unsigned:
            name = (
                request.headers.get(USER_HEADER)
                or parse_qs(urlsplit(request.path).query).get("user", [""])[0]
            )
            return local_user_arn(name) if name and USER_PATTERN.match(name) else None
        except BadSignature:
            return None
        return None if principal == SANDBOX_PRINCIPAL else principal

    def _serve(self, connection: ServerConnection) -> None:
        request = connection.request
        if request is None:  # the handshake failed; the library closed the connection
            return
        user = self._caller(request)
        connection_id = uuid.uuid4().hex[:16] + "="
        answer = self.invoke(self._event("$connect", connection_id, user, None))
        if int(answer.get("statusCode", 500)) != 200:
            connection.close(code=1008, reason="unauthenticated")
            return
        with self._lock:
            self.connections[connection_id] = connection
        try:
            for message in connection:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                reply = self.invoke(self._event("$default", connection_id, user, text))
                if reply and reply.get("body"):
                    connection.send(reply["body"])
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.connections.pop(connection_id, None)
            try:
                self.invoke(self._event("$disconnect", connection_id, user, None))
            except Exception:
                log.exception("$disconnect failed")
