"""The sessions HTTP contract through the real Lambda handler, against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.sessions.conftest import ALICE, BOB


@pytest.fixture
def call(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Call]:
    with api_caller("sessions", environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


@pytest.fixture
def storage_call(
    storage_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: FakeLambdaContext,
) -> Iterator[Call]:
    with api_caller("sessions", storage_environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


def test_post_creates_201_then_returns_the_same_session_200(call: Any) -> None:
    status, created = call("POST", "/sessions", {"profile": "default"})
    assert status == 201
    assert created["status"] == "STARTING"
    assert created["user"] == ALICE
    assert set(created) >= {
        "id", "user", "profile", "status", "private_ip", "task_arn",
        "created_at", "expires_at", "error", "port",
    }  # fmt: skip
    status, again = call("POST", "/sessions", {"profile": "default"})
    assert status == 200
    assert again["id"] == created["id"]


def test_default_profile_when_body_is_empty_object(call: Any) -> None:
    status, created = call("POST", "/sessions", {})
    assert status == 201
    assert created["profile"] == "default"


@pytest.mark.parametrize(
    ("body", "raw", "code"),
    [
        ({"profile": "gpu"}, None, "unknown_profile"),
        ({"profile": "default", "ttl_seconds": 10**6}, None, "invalid_request"),
        ({"profile": "default", "ttl_seconds": -5}, None, "invalid_request"),
        ({"profile": "default", "ttl_seconds": "soon"}, None, "invalid_request"),
        ({"profile": "default", "user": "bob"}, None, "invalid_request"),
        ({"profile": ["default"]}, None, "invalid_request"),
        (None, '{"profile": "default"', "invalid_request"),
        (None, "[]", "invalid_request"),
        (None, "null", "invalid_request"),
    ],
)
def test_bad_input_is_a_400_in_berth_error_shape(
    call: Any, body: Any, raw: str | None, code: str
) -> None:
    status, error = call("POST", "/sessions", body, raw=raw)
    assert status == 400, error
    assert set(error) == {"error"}
    assert error["error"]["code"] == code
    assert error["error"]["message"]


def test_a_huge_body_is_a_413(call: Any) -> None:
    status, error = call("POST", "/sessions", raw=json.dumps({"profile": "x" * 70_000}))
    assert (status, error["error"]["code"]) == (413, "payload_too_large")


def test_no_caller_identity_is_a_401(call: Any) -> None:
    status, error = call("GET", "/sessions", user=None)
    assert (status, error["error"]["code"]) == (401, "unauthenticated")


def test_get_list_heartbeat_and_delete(call: Any) -> None:
    _, created = call("POST", "/sessions", {"profile": "default"})
    session_id = created["id"]

    status, current = call("GET", f"/sessions/{session_id}")
    assert status == 200
    assert current["status"] == "RUNNING"
    assert current["private_ip"]

    status, listing = call("GET", "/sessions")
    assert status == 200
    assert [item["id"] for item in listing["items"]] == [session_id]
    assert listing["next_token"] is None

    status, beaten = call("POST", f"/sessions/{session_id}/heartbeat")
    assert status == 200
    assert beaten["last_heartbeat_at"] >= created["last_heartbeat_at"]

    status, stopping = call("DELETE", f"/sessions/{session_id}")
    assert (status, stopping["status"]) == (202, "STOPPING")
    status, stopped = call("GET", f"/sessions/{session_id}")
    assert (status, stopped["status"]) == (200, "STOPPED")
    status, again = call("DELETE", f"/sessions/{session_id}")
    assert (status, again["status"]) == (200, "STOPPED")


def test_other_users_and_malformed_ids_are_404(call: Any) -> None:
    _, created = call("POST", "/sessions", {"profile": "default"})
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/heartbeat")):
        status, error = call(method, f"/sessions/{created['id']}{suffix}", user=BOB)
        assert (status, error["error"]["code"]) == (404, "not_found")
    status, error = call("GET", "/sessions/../../etc/passwd")
    assert status == 404
    status, error = call("GET", "/sessions/ses_nothex")
    assert (status, error["error"]["code"]) == (404, "not_found")


def test_list_limits_are_validated(call: Any) -> None:
    status, error = call("GET", "/sessions", query={"limit": "1000"})
    assert (status, error["error"]["code"]) == (400, "invalid_request")
    status, error = call("GET", "/sessions", query={"next_token": "garbage!"})
    assert (status, error["error"]["code"]) == (400, "invalid_request")


def test_profiles_lists_what_a_caller_may_start(call: Any, environment: dict[str, str]) -> None:
    status, listed = call("GET", "/profiles")
    configured = json.loads(environment["BERTH_PROFILES"])
    assert status == 200
    assert [p["name"] for p in listed["items"]] == sorted(configured)
    default = next(p for p in listed["items"] if p["name"] == "default")
    assert default == {
        "name": "default",
        "port": configured["default"]["port"],
        "default_ttl_seconds": configured["default"]["default_ttl_seconds"],
        "max_ttl_seconds": configured["default"]["max_ttl_seconds"],
        "idle_timeout_seconds": configured["default"]["idle_timeout_seconds"],
        "warm_pool": configured["default"].get("warm_pool", 0),
        "storage_path": None,  # its sessions keep nothing
    }
    assert "task_definition" not in default  # what the caller needs, not the deployment's ARNs


def test_storage_routes_list_and_wipe_only_the_callers_volumes(storage_call: Any) -> None:
    """GET /sessions/storage is the caller's volumes; DELETE .../storage/{profile} is 409
    while a session of it is live, 404 for a volume the caller does not have or a profile
    there is not (the route is not mistaken for a session id)."""
    status, listed = storage_call("GET", "/sessions/storage")
    assert (status, listed) == (200, {"items": []})
    storage_call("POST", "/sessions", {"profile": "default"})
    status, listed = storage_call("GET", "/sessions/storage")
    (volume,) = listed["items"]
    assert (volume["profile"], volume["path"]) == ("default", "/data")
    assert storage_call("GET", "/sessions/storage", user=BOB)[1] == {"items": []}
    status, error = storage_call("DELETE", "/sessions/storage/default")
    assert (status, error["error"]["code"]) == (409, "session_live")
    status, error = storage_call("DELETE", "/sessions/storage/default", user=BOB)
    assert (status, error["error"]["code"]) == (404, "not_found")
    status, error = storage_call("DELETE", "/sessions/storage/nosuch")
    assert (status, error["error"]["code"]) == (404, "not_found")


def test_logs_are_the_owners_and_since_must_be_a_time(call: Any) -> None:
    _, created = call("POST", "/sessions", {"profile": "default"})
    status, page = call("GET", f"/sessions/{created['id']}/logs")
    assert (status, page) == (200, {"items": [], "next_token": None})  # nothing printed yet
    status, error = call("GET", f"/sessions/{created['id']}/logs", user=BOB)
    assert (status, error["error"]["code"]) == (404, "not_found")
    status, error = call("GET", f"/sessions/{created['id']}/logs", query={"since": "yesterday"})
    assert (status, error["error"]["code"]) == (400, "invalid_request")
    status, _ = call(
        "GET", f"/sessions/{created['id']}/logs", query={"since": "2026-12-05T07:00:00Z"}
    )
    assert status == 200
