"""The sessions contract over HTTP against ``make local`` (the sandbox in its own process)."""

from __future__ import annotations

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
