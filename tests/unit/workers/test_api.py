"""Workspace commands through the real handler: validation, listing, cancel, limits, 4xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest

from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.workers.conftest import ALICE, BOB, MakeWorker
from workers.config import WorkersConfig
from workers.tenancy import queue_name, tenant_of


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
    assert queued["sequence"] and queued["log_url"] is None and queued["output_tail"] == ""
    status, shown = call("GET", f"/workspaces/demo/commands/{queued['id']}")
    assert (status, shown["status"], shown["exit_code"], shown["error"]) == (
        200,
        "QUEUED",
        None,
        None,
    )
    assert shown == queued


def test_a_finished_command_shows_its_error_tail_and_log_url(
    call: Any, make_worker: MakeWorker
) -> None:
    _, queued = call("POST", "/workspaces/demo/commands", {"command": "echo out; exit 3"})
    make_worker().run_forever()
    _, done = call("GET", f"/workspaces/demo/commands/{queued['id']}")
    assert (done["status"], done["exit_code"]) == ("FAILED", 3)
    assert done["error"] == {"code": "exit_status", "message": "the command exited with 3"}
    assert done["output_tail"] == "out\n"
    assert f"logs/demo/{queued['id']}.log" in done["log_url"]
    _, listed = call("GET", "/workspaces/demo/commands")
    (item,) = listed["items"]
    # list items and GET agree field by field; each presigns the log URL when it answers
    # (the signature carries that second), so the URLs agree up to their query
    assert item.pop("log_url").split("?")[0] == done.pop("log_url").split("?")[0]
    assert item == done


def test_the_list_is_newest_first_and_paginated(call: Any) -> None:
    ids = []
    for n in range(5):
        ids.append(call("POST", "/workspaces/demo/commands", {"command": f"echo {n}"})[1]["id"])
        time.sleep(0.002)  # creation times are kept to the millisecond
    status, first = call("GET", "/workspaces/demo/commands", query={"limit": "2"})
    assert status == 200 and [c["id"] for c in first["items"]] == ids[:-3:-1]
    _, second = call(
        "GET", "/workspaces/demo/commands", query={"limit": "2", "next_token": first["next_token"]}
    )
    _, third = call(
        "GET", "/workspaces/demo/commands", query={"limit": "2", "next_token": second["next_token"]}
    )
    seen = [c["id"] for page in (first, second, third) for c in page["items"]]
    assert seen == ids[::-1]
    assert third["next_token"] is None


def test_a_next_token_from_another_project_is_refused(call: Any) -> None:
    for project in ("one", "two"):
        for n in range(2):
            call("POST", f"/workspaces/{project}/commands", {"command": f"echo {n}"})
    _, page = call("GET", "/workspaces/one/commands", query={"limit": "1"})
    status, error = call(
        "GET", "/workspaces/two/commands", query={"next_token": page["next_token"]}
    )
    assert (status, error["error"]["code"]) == (400, "invalid_request")
    status, error = call("GET", "/workspaces/two/commands", query={"next_token": "garbage!"})
    assert (status, error["error"]["code"]) == (400, "invalid_request")


def test_cancel_a_queued_command_then_again(call: Any) -> None:
    _, queued = call("POST", "/workspaces/demo/commands", {"command": "sleep 1"})
    status, cancelled = call("DELETE", f"/workspaces/demo/commands/{queued['id']}")
    assert (status, cancelled["status"], cancelled["error"]["code"]) == (
        200,
        "CANCELLED",
        "cancelled",
    )
    status, again = call("DELETE", f"/workspaces/demo/commands/{queued['id']}")
    assert (status, again["status"]) == (200, "CANCELLED")


def test_cancel_a_running_command_is_202_until_its_worker_stops_it(
    call: Any, environment: dict[str, str], aws: boto3.session.Session
) -> None:
    from workers.repository import WorkersRepository

    _, queued = call("POST", "/workspaces/demo/commands", {"command": "sleep 30"})
    repository = WorkersRepository(aws.resource("dynamodb").Table("workers"))
    repository.claim(queued["id"], "w1", 1.0e9, 60)
    status, asked = call("DELETE", f"/workspaces/demo/commands/{queued['id']}")
    assert (status, asked["status"], asked["cancel_requested"]) == (202, "RUNNING", True)


def test_the_queued_limit_is_a_429_and_frees_up_as_commands_end(
    call: Any, make_worker: MakeWorker
) -> None:
    for n in range(5):  # max_pending_per_user is 5 in these tests
        assert call("POST", "/workspaces/demo/commands", {"command": f"echo {n}"})[0] == 202
    status, error = call("POST", "/workspaces/other/commands", {"command": "echo 6"})
    assert (status, error["error"]["code"]) == (429, "command_limit")
    status, _ = call("POST", "/workspaces/bobs/commands", {"command": "echo"}, user=BOB)
    assert status == 202  # the limit is per user
    make_worker().run_forever()
    for n in range(4):
        assert call("POST", "/workspaces/demo/commands", {"command": f"echo {n}"})[0] == 202
    _, queued = call("POST", "/workspaces/demo/commands", {"command": "echo last"})
    call("DELETE", f"/workspaces/demo/commands/{queued['id']}")  # a cancel frees one too
    assert call("POST", "/workspaces/demo/commands", {"command": "echo again"})[0] == 202


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


def test_someone_elses_project_is_404_everywhere(call: Any) -> None:
    _, queued = call("POST", "/workspaces/mine/commands", {"command": "ls"})
    for method, path, body in (
        ("POST", "/workspaces/mine/commands", {"command": "ls"}),
        ("GET", "/workspaces/mine/commands", None),
        ("GET", f"/workspaces/mine/commands/{queued['id']}", None),
        ("DELETE", f"/workspaces/mine/commands/{queued['id']}", None),
    ):
        status, error = call(method, path, body, user=BOB)
        assert (status, error["error"]["code"]) == (404, "not_found"), (method, path)
    _, still = call("GET", f"/workspaces/mine/commands/{queued['id']}")
    assert still["status"] == "QUEUED"


def test_an_unknown_or_malformed_command_id_is_404(call: Any) -> None:
    call("POST", "/workspaces/demo/commands", {"command": "ls"})
    for command_id in ("cmd_" + "0" * 28, "../../etc", "x"):
        status, error = call("GET", f"/workspaces/demo/commands/{command_id}")
        assert (status, error["error"]["code"]) == (404, "not_found")


def test_a_queue_failure_is_a_503_and_leaves_nothing_queued(
    call: Any, config: WorkersConfig, aws: boto3.session.Session
) -> None:
    # a queue of that name that berth did not make (other attributes): CreateQueue refuses
    aws.client("sqs").create_queue(
        QueueName=queue_name(config.user_queue_prefix, ALICE),
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "7"},
    )
    status, error = call("POST", "/workspaces/demo/commands", {"command": "ls"})
    assert (status, error["error"]["code"]) == (503, "unavailable")
    _, listed = call("GET", "/workspaces/demo/commands")
    assert listed["items"] == []  # sent first: nothing was recorded, nothing counted
    for n in range(config.max_pending_per_user):
        status, _ = call("POST", "/workspaces/other/commands", {"command": f"echo {n}"})
        assert status == 503  # (the queue is still not berth's) — never a command_limit 429


def test_a_record_that_fails_after_the_send_is_a_503_and_nothing_counted(
    call: Any, config: WorkersConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sent, then the record refused (throttled after botocore's retries): the caller hears
    503 — nothing will run (the worker drops a message without a record) — and the user's
    count is untouched."""
    from botocore.exceptions import ClientError

    from workers.repository import WorkersRepository

    add, failures = WorkersRepository.add, [1]

    def throttled_once(self: Any, *args: Any) -> None:
        if failures:
            failures.pop()
            error = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
            raise ClientError(error, "TransactWriteItems")
        add(self, *args)

    monkeypatch.setattr(WorkersRepository, "add", throttled_once)
    status, error = call("POST", "/workspaces/demo/commands", {"command": "ls"})
    assert (status, error["error"]["code"]) == (503, "unavailable")
    _, listed = call("GET", "/workspaces/demo/commands")
    assert listed["items"] == []
    accepted = [call("POST", "/workspaces/demo/commands", {"command": f"echo {n}"})
                for n in range(config.max_pending_per_user)]  # fmt: skip
    assert [status for status, _ in accepted] == [202] * config.max_pending_per_user


def test_each_user_gets_a_queue_of_their_own_fifo_encrypted_tls_only_and_redriven(
    call: Any, config: WorkersConfig, aws: boto3.session.Session
) -> None:
    call("POST", "/workspaces/demo/commands", {"command": "ls"})
    call("POST", "/workspaces/other/commands", {"command": "ls"})  # the same queue again
    sqs = aws.client("sqs")
    urls = sqs.list_queues(QueueNamePrefix=config.user_queue_prefix)["QueueUrls"]
    assert urls == [
        sqs.get_queue_url(QueueName=queue_name(config.user_queue_prefix, ALICE))["QueueUrl"]
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=urls[0], AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["DeduplicationScope"] == "messageGroup"  # one group per project
    assert attributes["FifoThroughputLimit"] == "perMessageGroupId"
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert attributes["VisibilityTimeout"] == str(config.lease_seconds)
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": config.dead_letter_queue_arn,
        "maxReceiveCount": config.max_receive_count,
    }
    (deny,) = json.loads(attributes["Policy"])["Statement"]
    assert (deny["Effect"], deny["Condition"]) == (
        "Deny",
        {"Bool": {"aws:SecureTransport": "false"}},
    )
    assert sqs.list_queue_tags(QueueUrl=urls[0])["Tags"] == {"berth:tenant": tenant_of(ALICE)}


@pytest.fixture
def live_call(
    environment: dict[str, str],
    aws: boto3.session.Session,
    synth: Any,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: FakeLambdaContext,
) -> Iterator[Call]:
    from tests.aws import create_table_like

    create_table_like(aws.client("dynamodb"), synth, "LiveConnections", "connections")
    live = {
        **environment,
        "BERTH_CONNECTIONS_TABLE": "connections",
        "BERTH_WEBSOCKET_URL": "wss://ws.example/prod",
        "BERTH_CONNECT_URL_SECONDS": "60",
    }
    with api_caller("workers", live, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


def test_a_terminal_connect_url_is_its_owners_for_that_terminal_only(
    live_call: Any, aws: boto3.session.Session
) -> None:
    from shared.live import Ticket, Tickets

    path = "/workspaces/demo/terminals/t2/connect"
    assert live_call("POST", path)[0] == 404  # no such project yet
    live_call("POST", "/workspaces/demo/commands", {"command": "true"})  # alice's from now on
    status, link = live_call("POST", path)
    assert status == 200, link
    assert link["topic"] == "terminal:demo:t2"
    assert link["url"].startswith("wss://ws.example/prod?ticket=")
    lifetime = datetime.fromisoformat(link["expires_at"]).timestamp() - time.time()
    assert 55 <= lifetime <= 60  # workers.connect_url_seconds
    tickets = Tickets(aws.resource("dynamodb").Table("connections"), time.time)
    secret = link["url"].split("ticket=")[1]
    assert tickets.redeem(secret) == Ticket(ALICE, "terminal:demo:t2")
    status, error = live_call("POST", path, user=BOB)
    assert (status, error["error"]["code"]) == (404, "not_found")
    for bad in ("T1", "a" * 64, "..", "t%2F1"):
        assert live_call("POST", f"/workspaces/demo/terminals/{bad}/connect")[0] in {400, 404}
