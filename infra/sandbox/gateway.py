"""The local stand-in for API Gateway: HTTP on localhost → REST proxy events → handlers.

Routes come from the deployed template's ``AWS::ApiGateway::Method`` resources, so the
sandbox serves exactly the API that ``cdk deploy`` would. The caller's identity comes from
the ``X-Berth-User`` header — accepted here only, standing in for SigV4; the header itself is
not passed on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from infra.sandbox.emulator import Deployment
from infra.sandbox.events import local_user_arn, match_resource, rest_event

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


def make_handler(
    routes: list[Route], invoke: Invoke, post_to_connection: PostToConnection | None = None
) -> type[BaseHTTPRequestHandler]:
    class Gateway(BaseHTTPRequestHandler):
        server_version = "berth-local"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            sent = {k.lower(): v for k, v in (headers or {}).items()}
            sent.setdefault("content-type", "application/json")
            sent["content-length"] = str(len(body))
            for key, value in sent.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._send(413, error_body("payload_too_large", "request body over 10 MB"))
                return
            raw = self.rfile.read(length) if length else b""
            management = MANAGEMENT_PATH.match(url.path)
            if management and post_to_connection and self.command == "POST":
                # the WebSocket management API (functions and workers push through it)
                if post_to_connection(unquote(management.group(1)), raw):
                    self._send(200, b"{}")
                else:
                    self._send(410, b'{"message": "Gone"}', {"x-amzn-ErrorType": "GoneException"})
                return
            body = raw.decode("utf-8", "replace") if raw else None
            matches = [
                (route, params)
                for route in routes
                if (params := match_resource(route.resource, url.path)) is not None
            ]
            allowed = [route for route, _ in matches if route.method == self.command]
            if not matches:
                self._send(404, error_body("not_found", f"no route {url.path}"))
                return
            if not allowed:
                self._send(405, error_body("method_not_allowed", f"{self.command} {url.path}"))
                return
            user = self.headers.get(USER_HEADER)
            if not user or not USER_PATTERN.match(user):
                self._send(
                    401,
                    error_body(
                        "unauthenticated",
                        f"send {USER_HEADER}: <user> (the sandbox's stand-in for SigV4)",
                    ),
                )
                return
            route = allowed[0]
            headers = {k: v for k, v in self.headers.items() if k.lower() != USER_HEADER.lower()}
            event = rest_event(
                self.command,
                url.path,
                resource=route.resource,
                body=body,
                headers=headers,
                query=dict(parse_qsl(url.query)) or None,
                user_arn=local_user_arn(user),
            )
            try:
                response = invoke(route.function, event)
            except Exception as exc:  # the handler crashed: what API Gateway answers
                self._send(502, error_body("bad_gateway", f"the function failed: {exc}"))
                return
            payload = response.get("body") or ""
            self._send(
                int(response.get("statusCode", 502)),
                payload.encode() if isinstance(payload, str) else payload,
                response.get("headers") or {},
            )

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Gateway


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of parallel clients; the stdlib default (5) resets them


def serve(
    host: str,
    port: int,
    routes: list[Route],
    invoke: Invoke,
    post_to_connection: PostToConnection | None = None,
) -> GatewayServer:
    return GatewayServer((host, port), make_handler(routes, invoke, post_to_connection))
