"""The credentials route: a worker task gets credentials tagged with the one user its binding
names, and with a command's project only for a command of that user; nobody else gets any."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from infra.sandbox.events import rest_event
from tests.unit.workers.conftest import ALICE, BOB, QUEUE_PREFIX, TABLE, queue
from workers.config import VendingConfig
from workers.reserve import FleetRegistry
from workers.service import CommandService
from workers.tenancy import queue_name, tenant_of

WORKER_ROLE = "berth-WorkersWorkerTaskTaskRole"
TASK = "0123456789abcdef0123456789abcdef"
TASK_CALLER = f"arn:aws:sts::123456789012:assumed-role/{WORKER_ROLE}/{TASK}"


@pytest.fixture
def vend(
    aws: boto3.session.Session,
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
) -> Any:
    """``vend(caller, body) -> (status, json)`` through the real handler; records the STS
    calls it makes."""
    role = aws.client("iam").create_role(
        RoleName="tenant", AssumeRolePolicyDocument=json.dumps({"Statement": []})
    )["Role"]["Arn"]
    for key, value in VendingConfig.environment(
        workers_table=TABLE,
        tenant_role_arn=role,
        worker_role_name=WORKER_ROLE,
        user_queue_prefix=QUEUE_PREFIX,
    ).items():
        monkeypatch.setenv(key, value)
    from workers import credential_handler, vending

    vending.vendor_from_env.cache_clear()
    calls: list[dict[str, Any]] = []
    vendor = vending.vendor_from_env()
    sts = vendor.sts

    class Recording:
        def assume_role(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return sts.assume_role(**kwargs)

    vendor.sts = Recording()

    def call(caller: str | None, body: Any = None) -> tuple[int, Any]:
        event = rest_event(
            "POST", "/workers/credentials", body=json.dumps(body or {}), user_arn=caller
        )
        response = credential_handler.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    call.calls = calls  # type: ignore[attr-defined]
    call.role = role  # type: ignore[attr-defined]
    yield call
    vending.vendor_from_env.cache_clear()


def tags(call: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in call["Tags"]}


def test_a_bound_task_gets_its_users_credentials_tagged_with_that_user(
    vend: Any, repository: Any
) -> None:
    assert FleetRegistry(repository.table).bind(TASK, ALICE, time.time())
    status, body = vend(TASK_CALLER)
    assert status == 200, body
    assert (body["user"], body["queue_name"]) == (ALICE, queue_name(QUEUE_PREFIX, ALICE))
    assert set(body["credentials"]) == {
        "access_key_id",
        "secret_access_key",
        "session_token",
        "expiration",
    }
    (call,) = vend.calls
    assert call["RoleArn"] == vend.role and call["RoleSessionName"] == TASK
    assert tags(call) == {"user": ALICE, "tenant": tenant_of(ALICE)}


def test_a_command_of_its_user_adds_that_project_and_command(
    vend: Any, repository: Any, service: CommandService
) -> None:
    assert FleetRegistry(repository.table).bind(TASK, ALICE, time.time())
    queued = queue(service, ALICE, "demo", "t1", "ls")
    status, _ = vend(TASK_CALLER, {"command_id": queued.id})
    assert status == 200
    (call,) = vend.calls
    assert tags(call) == {
        "user": ALICE,
        "tenant": tenant_of(ALICE),
        "project": "demo",
        "command": queued.id,
    }


def test_another_users_command_is_not_found(
    vend: Any, repository: Any, service: CommandService
) -> None:
    assert FleetRegistry(repository.table).bind(TASK, ALICE, time.time())
    theirs = queue(service, BOB, "bobs", "t1", "cat secret.txt")
    status, body = vend(TASK_CALLER, {"command_id": theirs.id})
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert vend.calls == []


@pytest.mark.parametrize(
    "caller",
    [
        ALICE,  # a user, even the one the task serves
        f"arn:aws:sts::123456789012:assumed-role/some-other-role/{TASK}",
        f"arn:aws:iam::123456789012:role/{WORKER_ROLE}",
    ],
)
def test_nobody_but_a_worker_task_gets_anything(vend: Any, repository: Any, caller: str) -> None:
    assert FleetRegistry(repository.table).bind(TASK, ALICE, time.time())
    status, body = vend(caller)
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert vend.calls == []


def test_an_unbound_task_or_one_that_left_gets_nothing(vend: Any, repository: Any) -> None:
    status, body = vend(TASK_CALLER)
    assert (status, body["error"]["code"]) == (409, "not_bound")
    assert FleetRegistry(repository.table).leave_unbound(TASK, time.time())
    status, body = vend(TASK_CALLER)
    assert (status, body["error"]["code"]) == (409, "not_bound")
    assert vend.calls == []


def test_the_body_cannot_name_a_user_or_project(vend: Any, repository: Any) -> None:
    assert FleetRegistry(repository.table).bind(TASK, ALICE, time.time())
    status, body = vend(TASK_CALLER, {"user": BOB})
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    status, body = vend(TASK_CALLER, {"command_id": "../CMD#x"})
    assert (status, body["error"]["code"]) == (400, "invalid_request")
