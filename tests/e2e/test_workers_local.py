"""Workspace commands against make local: a worker process runs them, output reaches the
local WebSocket endpoint in order, files persist in the emulated workspace bucket."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def frames_until_done(socket: Any, command_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            frame = json.loads(socket.recv(timeout=5))
        except TimeoutError:
            continue
        if frame.get("command_id") != command_id:
            continue
        frames.append(frame)
        if frame["type"] == "status" and frame["data"]["status"] in {"SUCCEEDED", "FAILED"}:
            return frames
    raise AssertionError(f"no final status for {command_id}: {frames}")


def test_output_streams_to_the_subscribed_terminal_and_files_persist(sandbox: Sandbox) -> None:
    code, _ = sandbox.request("POST", "/workspaces/jims/commands", {"command": "true"}, user="jim")
    assert code == 202  # jim owns the project from now on
    with connect(sandbox.websocket, additional_headers={"X-Berth-User": "jim"}) as socket:
        socket.send(json.dumps({"action": "subscribe", "project": "jims", "terminal": "t1"}))
        assert json.loads(socket.recv(timeout=10)) == {"subscribed": "terminal:jims:t1"}
        code, queued = sandbox.request(
            "POST",
            "/workspaces/jims/commands",
            {
                "command": "for i in 1 2 3; do echo line $i; sleep 0.2; done >out.txt; cat out.txt",
                "terminal": "t1",
            },
            user="jim",
        )
        assert (code, queued["status"]) == (202, "QUEUED")
        frames = frames_until_done(socket, queued["id"])
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # increasing, no gaps
    assert frames[-1]["data"] == {"status": "SUCCEEDED", "exit_code": 0}
    assert "".join(f["data"] for f in frames if f["type"] == "output") == "line 1\nline 2\nline 3\n"

    code, done = sandbox.request("GET", f"/workspaces/jims/commands/{queued['id']}", user="jim")
    assert (code, done["status"], done["exit_code"]) == (200, "SUCCEEDED", 0)
    # the next command sees the file the last one wrote (synced back to the bucket and down)
    with connect(sandbox.websocket, additional_headers={"X-Berth-User": "jim"}) as socket:
        socket.send(json.dumps({"action": "subscribe", "project": "jims", "terminal": "t2"}))
        socket.recv(timeout=10)
        _, again = sandbox.request(
            "POST",
            "/workspaces/jims/commands",
            {"command": "wc -l < out.txt", "terminal": "t2"},
            user="jim",
        )
        frames = frames_until_done(socket, again["id"])
    assert "".join(f["data"] for f in frames if f["type"] == "output").strip() == "3"


def test_only_the_owner_may_subscribe_or_run(sandbox: Sandbox) -> None:
    sandbox.request("POST", "/workspaces/kates/commands", {"command": "true"}, user="kate")
    code, error = sandbox.request(
        "POST", "/workspaces/kates/commands", {"command": "id"}, user="leo"
    )
    assert (code, error["error"]["code"]) == (404, "not_found")
    with connect(sandbox.websocket, additional_headers={"X-Berth-User": "leo"}) as socket:
        socket.send(json.dumps({"action": "subscribe", "project": "kates", "terminal": "t1"}))
        assert json.loads(socket.recv(timeout=10))["error"]["code"] == "not_found"


def test_a_websocket_without_identity_is_refused(sandbox: Sandbox) -> None:
    from websockets.exceptions import ConnectionClosed

    with connect(sandbox.websocket) as socket, pytest.raises(ConnectionClosed):
        socket.recv(timeout=10)


def test_session_status_is_pushed_to_the_owner(sandbox: Sandbox) -> None:
    with connect(sandbox.websocket, additional_headers={"X-Berth-User": "mia"}) as socket:
        code, created = sandbox.request("POST", "/sessions", {"profile": "default"}, user="mia")
        assert code == 201
        statuses = []
        deadline = time.monotonic() + 30
        while "RUNNING" not in statuses and time.monotonic() < deadline:
            try:
                message = json.loads(socket.recv(timeout=5))
            except TimeoutError:
                continue
            if message.get("type") == "session" and message["session"]["id"] == created["id"]:
                statuses.append(message["session"]["status"])
        assert "RUNNING" in statuses
