"""Workspace commands through the real handler: names and commands validated, 4xx shapes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.workers.conftest import ALICE, BOB


@pytest.fixture
def call(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Call]:
    with api_caller("workers", environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


def test_queue_then_read_a_command(call: Any) -> None:
    status, queued = call(
        "POST", "/workspaces/demo/commands", {"command": "ls -la", "terminal": "t1"}
    )
    assert (status, queued["status"]) == (202, "QUEUED")
    assert queued["log"].endswith(f"/logs/demo/{queued['id']}.log")
    status, shown = call("GET", f"/workspaces/demo/commands/{queued['id']}")
    assert (status, shown["status"], shown["exit_code"]) == (200, "QUEUED", None)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/workspaces/Demo/commands", {"command": "ls"}),
        ("/workspaces/demo_1/commands", {"command": "ls"}),
        ("/workspaces/" + "a" * 64 + "/commands", {"command": "ls"}),
        ("/workspaces/demo/commands", {"command": "ls", "terminal": "T1"}),
        ("/workspaces/demo/commands", {"command": "ls", "terminal": "../x"}),
        ("/workspaces/demo/commands", {"command": ""}),
        ("/workspaces/demo/commands", {"command": "a\x00b"}),
        ("/workspaces/demo/commands", {"command": "ls", "shell": "/bin/sh"}),
        ("/workspaces/demo/commands", {"command": "x" * 201}),
    ],
)
def test_bad_requests_are_400(call: Any, path: str, body: Any) -> None:
    status, error = call("POST", path, body)
    assert status == 400, error
    assert error["error"]["code"] in {"invalid_request", "command_too_long"}


def test_someone_elses_project_is_404(call: Any) -> None:
    call("POST", "/workspaces/mine/commands", {"command": "ls"})
    status, error = call("POST", "/workspaces/mine/commands", {"command": "ls"}, user=BOB)
    assert (status, error["error"]["code"]) == (404, "not_found")
