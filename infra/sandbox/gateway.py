"""The local stand-in for API Gateway: HTTP on localhost → REST proxy events → handlers.

Routes come from the deployed template's ``AWS::ApiGateway::Method`` resources, so the
sandbox serves exactly the API that ``cdk deploy`` would. The caller's identity comes from a
SigV4 signature made with the sandbox's local credentials (``sigv4.py``) — unsigned: 401, a
bad signature: 403 — or, for curl, from the ``X-Berth-User`` header, accepted here only and
not passed on. Everything answers in berth's error shape, as the deployed gateway's
rewritten responses do: unknown routes and methods, over-long lines, bad framing
(``Content-Length``, chunked bodies), slow clients (a read timeout) — never an HTML page.
The management API (``POST /@connections/{id}``) takes only the sandbox's own signature.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.sandbox.emulator import Deployment
from infra.sandbox.events import local_user_arn, match_resource, rest_event, specificity
from infra.sandbox.sigv4 import (
    SANDBOX_PRINCIPAL,
    BadSignature,
    LocalCredentials,
    Unsigned,
    url_of,
)

USER_HEADER = "X-Berth-User"
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's own payload limit
USER_PATTERN = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}$|^arn:aws:(iam|sts)::\d{12}:\S{1,200}$")


@dataclass(frozen=True)
class Route:
    method: str
    resource: str
    function: str  # logical id


def routes_of(deployment: Deployment) -> list[Route]:
    resources = deployment.resources("AWS::ApiGateway::Resource")

    def path_of(reference: Any) -> str:
        if isinstance(reference, dict) and "Fn::GetAtt" in reference:
            return ""  # the API's root resource
        logical_id = reference["Ref"]
        props = resources[logical_id]["Properties"]
        return f"{path_of(props['ParentId'])}/{props['PathPart']}"

    routes = []
    for method in deployment.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        uri = json.dumps(props["Integration"]["Uri"])
        found = re.search(r'"Fn::GetAtt": \["([A-Za-z0-9]+)", "Arn"\]', uri)
        if not found:
            continue
        routes.append(
            Route(props["HttpMethod"], path_of(props["ResourceId"]) or "/", found.group(1))
        )
    # literal segments before {parameters}, as API Gateway prefers the most specific match
    return sorted(routes, key=lambda r: (r.resource.count("{"), -len(r.resource)))


Invoke = Callable[[str, dict[str, Any]], Any]
PostToConnection = Callable[[str, bytes], bool]
MANAGEMENT_PATH = re.compile(r"^(?:/[A-Za-z0-9_]+)?/@connections/([^/]+)$")


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


STDLIB_ERRORS = {  # what http.server refuses itself, in berth's words
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "method_not_allowed",
    505: "bad_request",
}
READ_TIMEOUT_SECONDS = 10


class Gateway(BaseHTTPRequestHandler):
    """One request: framing, the caller, the route, the function — or berth's error shape.
    What it serves is its server's (``GatewayServer``)."""

    server: GatewayServer
    server_version = "berth-local"
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_SECONDS  # a client that stops sending is let go

    def log_message(self, format: str, *args: Any) -> None:
        return

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method, known or not, gets an answer
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: Any = None) -> None:
        """http.server's own refusals (long lines, bad request lines) as berth errors."""
        status = 405 if code == 501 else code
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # answer with a status line, even to garbage
        self._send(
            status,
            error_body(STDLIB_ERRORS.get(code, "bad_request"), message or "bad request"),
        )

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        sent = {k.lower(): v for k, v in (headers or {}).items()}
        sent.setdefault("content-type", "application/json")
        sent["content-length"] = str(len(body))
        if self.close_connection:
            sent["connection"] = "close"
        for key, value in sent.items():
            self.send_header(key, value)
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.isdigit():
            raise Refused(400, "bad_request", "Content-Length must be a whole number")
        length = int(declared)
        if length > MAX_REQUEST_BYTES:
            raise Refused(413, "payload_too_large", "request body over 10 MB")
        try:
            raw = self.rfile.read(length)
        except TimeoutError:
            raise Refused(408, "request_timeout", "the body did not arrive in time") from None
        if len(raw) != length:
            raise Refused(400, "bad_request", "the body is shorter than Content-Length")
        return raw

    def _chunked(self) -> bytes:
        body = bytearray()
        try:
            while True:
                line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    raise Refused(400, "bad_request", "malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline(1024)
                if len(body) > MAX_REQUEST_BYTES:
                    raise Refused(413, "payload_too_large", "request body over 10 MB")
        except TimeoutError:
            raise Refused(408, "request_timeout", "the body did not arrive in time") from None

    def _caller(self, raw: bytes, url: str) -> str:
        """The principal: a verified SigV4 signature, else X-Berth-User (curl)."""
        headers = dict(self.headers.items())
        try:
            return self.server.credentials.verify(
                self.command,
                url_of(self.headers.get("Host", ""), url),
                headers,
                raw,
                datetime.now(UTC),
            )
        except Unsigned:
            pass
        except BadSignature as exc:
            raise Refused(403, "forbidden", f"the request signature is refused: {exc}") from None
        user = self.headers.get(USER_HEADER)
        if user and USER_PATTERN.match(user):
            return local_user_arn(user)
        raise Refused(
            401,
            "unauthenticated",
            f"sign the request with SigV4 (profiles berth-local-<user>) or send {USER_HEADER}",
        )

    def _handle(self) -> None:
        try:
            self._route()
        except Refused as refused:
            self.close_connection = refused.status in {400, 408, 413}
            self._send(refused.status, error_body(refused.code, refused.message))

    def _route(self) -> None:
        url = urlsplit(self.path)
        raw = self._body()
        management = MANAGEMENT_PATH.match(url.path)
        if management and self.server.post_to_connection and self.command == "POST":
            self._manage(unquote(management.group(1)), raw)
            return
        allowed = self._allowed(url.path)
        if allowed is None:
            return
        user = self._caller(raw, self.path)
        if user == SANDBOX_PRINCIPAL:
            raise Refused(403, "forbidden", "the sandbox's own credential is not a caller")
        self._invoke(allowed[0], url.path, url.query, raw, user)

    def _manage(self, connection_id: str, raw: bytes) -> None:
        """The WebSocket management API: the sandbox's own functions and workers only."""
        post = self.server.post_to_connection
        if not self.server.credentials.may_manage(self._caller(raw, self.path)):
            raise Refused(403, "forbidden", "the management API is the sandbox's own")
        if post is not None and post(connection_id, raw):
            self._send(200, b"{}")
        else:
            self._send(410, b'{"message": "Gone"}', {"x-amzn-ErrorType": "GoneException"})

    def _allowed(self, path: str) -> list[Route] | None:
        """The routes of the most specific resource matching ``path`` for this method; None
        once a 405 is answered."""
        matches = [
            route
            for route in self.server.routes
            if match_resource(route.resource, path) is not None
        ]
        if not matches:
            raise Refused(404, "not_found", f"no route {path}")
        # API Gateway walks its resource tree preferring a fixed segment to a {param} one:
        # /sessions/storage is its own resource, never /sessions/{session_id}
        resource = min({route.resource for route in matches}, key=specificity)
        matches = [route for route in matches if route.resource == resource]
        allowed = [route for route in matches if route.method == self.command]
        if not allowed:
            methods = ", ".join(sorted({route.method for route in matches}))
            self._send(
                405,
                error_body("method_not_allowed", f"{self.command} {path}"),
                {"Allow": methods},
            )
            return None
        return allowed

    def _invoke(self, route: Route, path: str, query: str, raw: bytes, user: str) -> None:
        """The proxy event to the route's function; its answer (a crash: 502), as is."""
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in {USER_HEADER.lower(), "authorization"}
        }
        event = rest_event(
            self.command,
            path,
            resource=route.resource,
            body=raw.decode("utf-8", "replace") if raw else None,
            headers=headers,
            query=dict(parse_qsl(query, keep_blank_values=True)) or None,  # as API Gateway
            user_arn=user,
        )
        try:
            response = self.server.invoke(route.function, event)
        except Exception as exc:  # the handler crashed: what API Gateway answers
            self._send(502, error_body("bad_gateway", f"the function failed: {exc}"))
            return
        payload = response.get("body") or ""
        self._send(
            int(response.get("statusCode", 502)),
            payload.encode() if isinstance(payload, str) else payload,
            response_headers(response),
        )


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """A proxy integration's answer may set ``headers`` and ``multiValueHeaders`` (Powertools
    uses the latter for REST APIs); API Gateway sends both, a list as one comma-joined value."""
    headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers[str(key)] = ", ".join(str(v) for v in values)
    return headers


class GatewayServer(ThreadingHTTPServer):
    """What the gateway serves: the template's routes, the functions, the local credentials
    and (for the management API) the WebSocket's connections."""

    daemon_threads = True
    request_queue_size = 256  # bursts of parallel clients; the stdlib default (5) resets them

    def __init__(
        self,
        address: tuple[str, int],
        routes: list[Route],
        invoke: Invoke,
        credentials: LocalCredentials,
        post_to_connection: PostToConnection | None = None,
    ) -> None:
        self.routes = routes
        self.invoke = invoke
        self.credentials = credentials
        self.post_to_connection = post_to_connection
        super().__init__(address, Gateway)


def serve(
    host: str,
    port: int,
    routes: list[Route],
    invoke: Invoke,
    credentials: LocalCredentials,
    post_to_connection: PostToConnection | None = None,
) -> GatewayServer:
    return GatewayServer((host, port), routes, invoke, credentials, post_to_connection)
