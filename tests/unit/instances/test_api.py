"""Instances over the real handler: a bad blob id is refused before anything is launched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from instances.config import InstancesConfig
from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.instances.conftest import ALICE, ec2_instances


@pytest.fixture
def call(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Call]:
    with api_caller("instances", environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


@pytest.mark.parametrize(
    "blob_id",
    [
        "abc;rm -rf /",
        "$(reboot)",
        "`id`",
        "has space",
        "../../etc/passwd",
        "line\nbreak",
        "x" * 129,
        "",
        "quote'",
        'dq"',
        "pipe|x",
        "amp&x",
        "dollar$HOME",
    ],
)
def test_unsafe_blob_ids_are_400_and_nothing_is_launched(
    call: Any, blob_id: str, aws: boto3.session.Session, config: InstancesConfig
) -> None:
    status, error = call("POST", "/instances", {"blob_id": blob_id})
    assert (status, error["error"]["code"]) == (400, "invalid_request")
    assert ec2_instances(aws) == []
    sfn = aws.client("stepfunctions")
    assert sfn.list_executions(stateMachineArn=config.state_machine_arn)["executions"] == []


def test_the_longest_valid_blob_id_is_accepted(call: Any) -> None:
    status, instance = call("POST", "/instances", {"blob_id": "A-_z9" * 25 + "abc"})
    assert (status, instance["status"]) == (202, "waiting_for_instance")


def test_get_list_and_delete(call: Any) -> None:
    _, created = call("POST", "/instances", {"blob_id": "blob"})
    status, shown = call("GET", f"/instances/{created['id']}")
    assert (status, shown["status"], shown["ec2"]) == (200, "waiting_for_instance", None)
    status, listed = call("GET", "/instances")
    assert [i["id"] for i in listed["items"]] == [created["id"]]
    status, deleted = call("DELETE", f"/instances/{created['id']}")
    assert (status, deleted["status"]) == (202, "terminated")
    status, _ = call("DELETE", f"/instances/{created['id']}")
    assert status == 200
    status, _ = call("GET", "/instances/ins_../../x")
    assert status == 404


def test_logs_route_answers_empty_until_the_script_is_sent_and_404_for_others(call: Any) -> None:
    _, created = call("POST", "/instances", {"blob_id": "blob"})
    status, log = call("GET", f"/instances/{created['id']}/logs")
    assert status == 200
    assert log == {
        "id": created["id"], "status": "waiting_for_instance", "script_status": None,
        "exit_code": None, "stdout": "", "stderr": "",
    }  # fmt: skip
    status, error = call("GET", f"/instances/{created['id']}/logs", user="arn:aws:iam::1:user/b")
    assert (status, error["error"]["code"]) == (404, "not_found")
