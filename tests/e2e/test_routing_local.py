"""Reaching your session through the local router: the host and the session's token, or 404.

The default profile's echo server runs as a local process; the sessions functions put the
same rules on the emulator's load balancer that they put on AWS's; the router applies them.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def running(sandbox: Sandbox, user: str) -> dict[str, Any]:
    code, session = sandbox.request("POST", "/sessions", {"profile": "default"}, user=user)
    assert code in (200, 201), session
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, shown = sandbox.request("GET", f"/sessions/{session['id']}", user=user)
        assert code == 200, shown
        if shown["status"] == "RUNNING":
            return dict(shown)
        time.sleep(0.2)
    raise AssertionError(f"session {session['id']} did not run")


def through_router(
    sandbox: Sandbox, host: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request to the router with ``Host: host`` (what a browser does for the url)."""
    address = urllib.parse.urlsplit(sandbox.router)
    lines = ["GET /hello HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def host_of(session: dict[str, Any]) -> str:
    return str(urllib.parse.urlsplit(session["url"]).hostname)


def until_served(sandbox: Sandbox, session: dict[str, Any]) -> Any:
    """The route opens when the session runs; its server may take a moment to listen."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = through_router(
            sandbox, host_of(session), {"X-Berth-Session-Token": session["token"]}
        )
        if status == 200:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{session['url']} never answered")


def test_a_session_is_reached_with_its_token_and_no_one_elses(sandbox: Sandbox) -> None:
    mine, theirs = running(sandbox, "rita"), running(sandbox, "rolf")
    assert mine["url"] == f"http://{mine['id']}.berth.localhost:{sandbox.router.rsplit(':', 1)[1]}/"
    assert mine["token"] and mine["token"] != theirs["token"]
    _, listed = sandbox.request("GET", "/sessions", user="rita")
    assert all(item["token"] is None for item in listed["items"])  # lists never show it

    echoed = until_served(sandbox, mine)
    assert (echoed["session"], echoed["path"]) == (mine["id"], "/hello")
    cookie = {"Cookie": f"theme=dark; berth-session={mine['token']}"}
    assert through_router(sandbox, host_of(mine), cookie)[0] == 200

    assert through_router(sandbox, host_of(mine))[0] == 404  # no token
    status, body = through_router(
        sandbox, host_of(mine), {"X-Berth-Session-Token": theirs["token"]}
    )  # another session's, another user's
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (
        through_router(sandbox, "berth.localhost", {"X-Berth-Session-Token": mine["token"]})[0]
        == 404
    )


def test_a_websocket_passes_through(sandbox: Sandbox) -> None:
    session = running(sandbox, "wes")
    until_served(sandbox, session)
    address = urllib.parse.urlsplit(sandbox.router)
    routed = socket.create_connection((address.hostname, address.port), timeout=10)
    with connect(  # the session's own url: its host goes in the Host header
        f"ws://{host_of(session)}:{address.port}/socket",
        sock=routed,
        additional_headers={"X-Berth-Session-Token": session["token"]},
    ) as socket_:
        socket_.send("hello over the route")
        assert socket_.recv(timeout=10) == "hello over the route"


def test_after_delete_the_route_is_gone(sandbox: Sandbox) -> None:
    session = running(sandbox, "dora")
    until_served(sandbox, session)
    code, _ = sandbox.request("DELETE", f"/sessions/{session['id']}", user="dora")
    assert code == 202
    token = {"X-Berth-Session-Token": session["token"]}
    assert through_router(sandbox, host_of(session), token)[0] == 404
    elbv2 = sandbox.aws("elbv2")
    (balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    hosts = json.dumps(elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"])
    assert session["id"] not in hosts


def test_rotating_the_token_retires_the_old_one(sandbox: Sandbox) -> None:
    session = running(sandbox, "rory")
    until_served(sandbox, session)
    code, rotated = sandbox.request("POST", f"/sessions/{session['id']}/token", user="rory")
    assert code == 200 and rotated["token"] != session["token"]
    old = {"X-Berth-Session-Token": session["token"]}
    assert through_router(sandbox, host_of(session), old)[0] == 404
    assert until_served(sandbox, rotated)["session"] == session["id"]
    code, _ = sandbox.request("POST", f"/sessions/{session['id']}/token", user="mallory")
    assert code == 404
