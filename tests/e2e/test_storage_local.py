"""Sessions that keep their data, against ``make local``: a file written through one session of
a profile with storage is there in the next one — for its user only — until they wipe it.

The "files" profile (the echo server, storage at /data) exists only in this module's settings;
its sessions are reached through the local router as a browser would reach them.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Any

import pytest

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e

PROFILE = "files"
SANDBOX_CONTEXT = {
    f"berth:sessions.profiles.{PROFILE}": {
        "image": "echo",
        "port": 8080,
        "storage": {"path": "/data"},
    },
}


def running(sandbox: Sandbox, user: str) -> dict[str, Any]:
    """A new session of the profile, RUNNING, its route open and its server listening."""
    code, session = sandbox.request("POST", "/sessions", {"profile": PROFILE}, user=user)
    assert code in (200, 201), session
    shown = until(sandbox, user, session["id"], "RUNNING")
    deadline = time.monotonic() + 30
    while through(sandbox, shown, "GET", "/hello")[0] != 200:
        assert time.monotonic() < deadline, f"{shown['url']} never answered"
        time.sleep(0.3)
    return shown


def until(sandbox: Sandbox, user: str, session_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        code, shown = sandbox.request("GET", f"/sessions/{session_id}", user=user)
        assert code == 200, shown
        if shown["status"] == status:
            return dict(shown)
        time.sleep(0.2)
    raise AssertionError(f"session {session_id} never reached {status}")


def stopped(sandbox: Sandbox, user: str, session: dict[str, Any]) -> None:
    code, _ = sandbox.request("DELETE", f"/sessions/{session['id']}", user=user)
    assert code in (200, 202)
    until(sandbox, user, session["id"], "STOPPED")


def through(
    sandbox: Sandbox, session: dict[str, Any], method: str, path: str, body: str = ""
) -> tuple[int, Any]:
    """One request to the session's url through the local router (its host, its token)."""
    router = urllib.parse.urlsplit(sandbox.router)
    host = str(urllib.parse.urlsplit(session["url"]).hostname)
    connection = http.client.HTTPConnection(str(router.hostname), router.port, timeout=10)
    try:
        connection.request(
            method,
            path,
            body=body.encode() or None,
            headers={"Host": host, "X-Berth-Session-Token": session["token"]},
        )
        answer = connection.getresponse()
        status, data = answer.status, answer.read()
    finally:
        connection.close()
    return status, json.loads(data) if data else None


def test_a_users_files_outlive_their_session_and_no_one_else_sees_them(
    sandbox: Sandbox,
) -> None:
    first = running(sandbox, "alice")
    assert through(sandbox, first, "PUT", "/storage/notes.txt", "kept across sessions") == (
        200,
        {"stored": "notes.txt"},
    )
    stopped(sandbox, "alice", first)

    second = running(sandbox, "alice")
    assert second["id"] != first["id"]
    assert through(sandbox, second, "GET", "/storage/notes.txt") == (
        200,
        {"name": "notes.txt", "content": "kept across sessions"},
    )
    bobs = running(sandbox, "bob")  # the same profile, another user: an empty volume
    assert through(sandbox, bobs, "GET", "/storage/notes.txt") == (404, {"missing": "notes.txt"})
    stopped(sandbox, "bob", bobs)

    code, listed = sandbox.request("GET", "/sessions/storage", user="alice")
    assert code == 200 and [v["profile"] for v in listed["items"]] == [PROFILE]
    assert listed["items"][0]["path"] == "/data"
    code, refused = sandbox.request("DELETE", f"/sessions/storage/{PROFILE}", user="alice")
    assert (code, refused["error"]["code"]) == (409, "session_live")
    stopped(sandbox, "alice", second)
    code, wiped = sandbox.request("DELETE", f"/sessions/storage/{PROFILE}", user="alice")
    assert (code, wiped["profile"]) == (200, PROFILE)

    # what the session's container printed: its request for the file among it
    deadline = time.monotonic() + 30
    while True:
        code, page = sandbox.request("GET", f"/sessions/{second['id']}/logs", user="alice")
        assert code == 200, page
        printed = [line["message"] for line in page["items"]]
        if any("GET /storage/notes.txt" in m for m in printed) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert any("berth-echo listening on port" in m for m in printed), printed
    assert any("GET /storage/notes.txt" in m for m in printed), printed
    assert sandbox.request("GET", f"/sessions/{second['id']}/logs", user="bob")[0] == 404

    third = running(sandbox, "alice")
    assert through(sandbox, third, "GET", "/storage/notes.txt") == (404, {"missing": "notes.txt"})
    stopped(sandbox, "alice", third)
