"""The sessions contract over HTTP against ``make local`` (the sandbox in its own process)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def wait_for(sandbox: Sandbox, user: str, session_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        code, session = sandbox.request("GET", f"/sessions/{session_id}", user=user)
        assert code == 200, session
        if session["status"] == status or time.monotonic() > deadline:
            return dict(session)
        time.sleep(0.2)


def running_tasks(sandbox: Sandbox) -> list[str]:
    ecs = boto3.client(
        "ecs",
        endpoint_url=sandbox.emulator,
        region_name="us-east-1",
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )
    arns: list[str] = []
    for cluster in ecs.list_clusters()["clusterArns"]:
        arns += ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
    return arns


def test_session_lifecycle_reaches_running_with_ip_then_stopped(sandbox: Sandbox) -> None:
    code, created = sandbox.request("POST", "/sessions", {"profile": "default"}, user="carol")
    assert code == 201, created
    running = wait_for(sandbox, "carol", created["id"], "RUNNING")
    assert running["status"] == "RUNNING"
    assert running["private_ip"]
    assert running["port"] == 8080

    code, stopping = sandbox.request("DELETE", f"/sessions/{created['id']}", user="carol")
    assert (code, stopping["status"]) == (202, "STOPPING")
    stopped = wait_for(sandbox, "carol", created["id"], "STOPPED")
    assert stopped["status"] == "STOPPED"
    code, again = sandbox.request("DELETE", f"/sessions/{created['id']}", user="carol")
    assert (code, again["status"]) == (200, "STOPPED")


def test_fifty_parallel_posts_start_exactly_one_task(sandbox: Sandbox) -> None:
    before = set(running_tasks(sandbox))
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(
            pool.map(
                lambda _: sandbox.request("POST", "/sessions", {"profile": "chroma"}, user="dave"),
                range(50),
            )
        )
    codes = sorted(code for code, _ in answers)
    assert codes == [200] * 49 + [201], answers[:3]
    assert len({body["id"] for _, body in answers}) == 1
    started = set(running_tasks(sandbox)) - before
    assert len(started) == 1


def test_errors_over_http(sandbox: Sandbox) -> None:
    code, error = sandbox.request("POST", "/sessions", {"profile": "default"}, user=None)
    assert (code, error["error"]["code"]) == (401, "unauthenticated")
    code, error = sandbox.request("POST", "/sessions", {"profile": "nope"}, user="erin")
    assert (code, error["error"]["code"]) == (400, "unknown_profile")
    code, created = sandbox.request("POST", "/sessions", {}, user="erin")
    assert code == 201
    code, error = sandbox.request("GET", f"/sessions/{created['id']}", user="frank")
    assert (code, error["error"]["code"]) == (404, "not_found")
    code, error = sandbox.request("PATCH", "/sessions", user="erin")
    assert code == 405


def test_openapi_document_is_served(sandbox: Sandbox) -> None:
    code, document = sandbox.request("GET", "/openapi.json")
    assert code == 200
    assert {"/sessions", "/sessions/{session_id}", "/health"} <= set(document["paths"])


# --- the gateway: SigV4, framing, errors in one shape ------------------------------------------


def test_a_sigv4_signed_request_is_the_same_caller_as_x_berth_user(sandbox: Sandbox) -> None:
    code, created = sandbox.signed("POST", "/sessions", {"profile": "default"})
    assert code in {200, 201}, created
    code, seen = sandbox.request("GET", f"/sessions/{created['id']}", user="alice")
    assert (code, seen["id"]) == (200, created["id"])  # alice either way
    code, other = sandbox.signed("GET", f"/sessions/{created['id']}", profile="berth-local-bob")
    assert (code, other["error"]["code"]) == (404, "not_found")


def test_a_wrong_signature_is_403_and_none_is_401(sandbox: Sandbox) -> None:
    code, error = sandbox.signed("GET", "/sessions", secret="not-the-secret")
    assert (code, error["error"]["code"]) == (403, "forbidden")
    code, error = sandbox.request("GET", "/sessions", user=None)
    assert (code, error["error"]["code"]) == (401, "unauthenticated")


def raw_http(sandbox: Sandbox, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request as bytes on a socket; the status, headers and body that come back."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(sandbox.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"OPTIONS /sessions HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"TRACE /sessions HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"BREW /sessions HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /sessions HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 120 + b"\r\n",
            431,
            "headers_too_large",
        ),
        (
            b"POST /sessions HTTP/1.1\r\nHost: x\r\nX-Berth-User: alice\r\n"
            b"Content-Length: abc\r\n\r\n{}",
            400,
            "bad_request",
        ),
        (
            b"POST /sessions HTTP/1.1\r\nHost: x\r\nX-Berth-User: alice\r\n"
            b"Content-Length: -1\r\n\r\n{}",
            400,
            "bad_request",
        ),
        (
            b"POST /sessions HTTP/1.1\r\nHost: x\r\nX-Berth-User: alice\r\n"
            b"Content-Length: 50\r\n\r\n{}",
            400,
            "bad_request",
        ),
        (
            b"POST /@connections/abc HTTP/1.1\r\nHost: x\r\nX-Berth-User: alice\r\n"
            b"Content-Length: 2\r\n\r\n{}",
            403,
            "forbidden",
        ),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    ],
)
def test_the_gateway_answers_every_request_in_the_error_shape(
    sandbox: Sandbox, request_bytes: bytes, status: int, code: str
) -> None:
    got, headers, body = raw_http(sandbox, request_bytes)
    assert got == status, body[:300]
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


def test_a_chunked_body_is_read_as_the_body(sandbox: Sandbox) -> None:
    payload = b'{"profile": "nope"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    got, _, body = raw_http(
        sandbox,
        b"POST /sessions HTTP/1.1\r\nHost: x\r\nX-Berth-User: alice\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
    )
    assert (got, json.loads(body)["error"]["code"]) == (400, "unknown_profile")


def test_a_method_not_served_names_the_ones_that_are(sandbox: Sandbox) -> None:
    got, headers, _ = raw_http(sandbox, b"PUT /sessions HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got == 405
    assert headers["allow"] == "GET, POST"


def test_a_fixed_path_segment_is_its_own_resource_as_on_api_gateway(sandbox: Sandbox) -> None:
    """/sessions/storage is not /sessions/{session_id}: its methods are its own (the fuzzer
    found OPTIONS /sessions/storage advertising DELETE, which only a session has)."""
    got, headers, _ = raw_http(sandbox, b"OPTIONS /sessions/storage HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (got, headers["allow"]) == (405, "GET")
    got, headers, _ = raw_http(sandbox, b"PATCH /sessions/ses_x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (got, headers["allow"]) == (405, "DELETE, GET")
