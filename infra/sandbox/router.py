"""The routing load balancer, locally: the same host + token rules, read from the emulator.

``make local`` gives the sessions functions a load balancer and listener in the emulator
(moto's ELBv2), so they open, rotate and close session routes exactly as on AWS. This router
listens on ``127.0.0.1:$BERTH_LOCAL_ROUTER_PORT`` and, per connection, does what the ALB's
listener does: evaluates the rules in priority order (host header, and an HTTP header —
the ``berth-session`` cookie or ``X-Berth-Session-Token`` — with ``*``/``?`` wildcards),
forwards to the target group's registered ``ip:port``, which the local task runner maps to
the session server's local port; anything else gets 404 in berth's error shape. A
connection is routed on its first request and then piped both ways, so WebSockets pass
through. (An ALB checks every request; clients here open a connection per session.)

Like the load balancer, it counts each routed request in CloudWatch (``AWS/ApplicationELB``
``RequestCount`` by load balancer and target group, in the emulator), per second where the
ALB counts per minute: the reaper reads it to tell a used session from an idle one.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sessions.activity import NAMESPACE, REQUESTS, request_dimensions

log = logging.getLogger("berth.sandbox")

MAX_HEAD = 64 * 1024
NOT_FOUND = json.dumps({"error": {"code": "not_found", "message": "no such session route"}})
Resolve = Callable[[str, int], "tuple[str, int] | None"]


def matches(pattern: str, value: str) -> bool:
    """An ALB condition value: ``*`` any characters, ``?`` one, case-insensitive."""
    return fnmatch.fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]"))


def rule_matches(rule: dict[str, Any], host: str, headers: dict[str, list[str]]) -> bool:
    for condition in rule.get("Conditions", []):
        if condition["Field"] == "host-header":
            values = condition.get("HostHeaderConfig", {}).get("Values") or condition["Values"]
            if not any(matches(v, host) for v in values):
                return False
        elif condition["Field"] == "http-header":
            config = condition["HttpHeaderConfig"]
            sent = headers.get(config["HttpHeaderName"].lower(), [])
            if not any(matches(v, s) for v in config["Values"] for s in sent):
                return False
        else:
            return False  # a condition this router does not know never matches
    return True


def parse_head(head: bytes) -> tuple[str, dict[str, list[str]]] | None:
    """The Host (without port) and the headers (lowercase names) of a request head."""
    try:
        lines = head.decode("latin-1").split("\r\n")
    except UnicodeDecodeError:
        return None
    if len(lines[0].split(" ")) != 3:
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    host = (headers.get("host") or [""])[0].rsplit(":", 1)[0] if headers.get("host") else ""
    return host, headers


class LocalRouter:
    def __init__(
        self,
        host: str,
        port: int,
        elbv2: Any,
        listener_arn: str,
        resolve: Resolve,
        cloudwatch: Any = None,
    ):
        self.elbv2 = elbv2
        self.cloudwatch = cloudwatch
        self.listener_arn = listener_arn
        self.resolve = resolve
        router = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                router.handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((host, port), Handler)
        self.address: tuple[str, int] = self.server.server_address[:2]  # type: ignore[assignment]

    def start(self) -> LocalRouter:
        threading.Thread(target=self.server.serve_forever, name="router", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def target(self, host: str, headers: dict[str, list[str]]) -> tuple[str, int] | None:
        """Where the request goes (counted for its target group), or None."""
        found = self.route(host, headers)
        if found is None:
            return None
        target_group, address = found
        self.count(target_group)
        return address

    def count(self, target_group: str) -> None:
        """One request for the target group, as the load balancer's metric counts it."""
        if self.cloudwatch is None:
            return
        try:
            self.cloudwatch.put_metric_data(
                Namespace=NAMESPACE,
                MetricData=[
                    {
                        "MetricName": REQUESTS,
                        "Dimensions": request_dimensions(self.listener_arn, target_group),
                        "Timestamp": datetime.now(UTC),
                        "Value": 1,
                        "Unit": "Count",
                        "StorageResolution": 1,
                    }
                ],
            )
        except Exception:  # a count lost is a request all the same
            log.exception("could not count a routed request")

    def route(
        self, host: str, headers: dict[str, list[str]]
    ) -> tuple[str, tuple[str, int] | None] | None:
        """The first matching rule's target group and its registered target's local address."""
        rules = self.elbv2.describe_rules(ListenerArn=self.listener_arn)["Rules"]
        ordered = sorted(
            (r for r in rules if not r.get("IsDefault")), key=lambda r: int(r["Priority"])
        )
        for rule in ordered:
            if not rule_matches(rule, host, headers):
                continue
            for action in rule.get("Actions", []):
                if action.get("Type") != "forward":
                    continue
                group = action["TargetGroupArn"]
                health = self.elbv2.describe_target_health(TargetGroupArn=group)
                for described in health.get("TargetHealthDescriptions", []):
                    registered = described["Target"]
                    return group, self.resolve(registered["Id"], int(registered["Port"]))
            return None
        return None

    def handle(self, client: socket.socket) -> None:
        client.settimeout(30)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        parsed = parse_head(head.split(b"\r\n\r\n", 1)[0]) if b"\r\n\r\n" in head else None
        address = None
        if parsed is not None:
            try:
                address = self.target(*parsed)
            except Exception:
                log.exception("routing failed")
        if address is None:
            body = NOT_FOUND.encode()
            client.sendall(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return
        try:
            upstream = socket.create_connection(address, timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream.settimeout(None)
        client.settimeout(None)
        upstream.sendall(head)
        pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        pump.start()
        _pipe(client, upstream)
        pump.join(timeout=5)
        upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
