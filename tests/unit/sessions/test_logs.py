"""A session's container output: read by its owner, a page at a time, followed with a token;
a failed session says what its container last printed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import boto3
import pytest

from sessions.config import SessionsConfig
from sessions.logs import stream_of
from sessions.models import Status
from sessions.service import SessionService
from shared.api import status_of
from shared.errors import DomainError
from tests.unit.sessions.conftest import ALICE, BOB, tasks_in_cluster

T0 = int(time.time() * 1000) - 60_000
"""A minute ago (CloudWatch Logs refuses events from the future)."""


def printed(
    aws: boto3.session.Session, config: SessionsConfig, task_arn: str, *lines: tuple[int, str]
) -> None:
    """The awslogs driver writing the container's lines (ms timestamps)."""
    logs = aws.client("logs")
    group = config.profiles["default"].log_group
    assert group is not None
    stream = stream_of("default", "session", task_arn)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": at, "message": text} for at, text in lines],
    )


def started(service: SessionService, aws: boto3.session.Session, config: SessionsConfig) -> Any:
    session, _ = service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    return session, task["taskArn"]


def test_the_owner_reads_the_output_in_pages_and_follows_it(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, task_arn = started(service, aws, config)
    assert service.logs(ALICE, session.id, since=None, limit=10, token=None) == ([], None)
    printed(aws, config, task_arn, (T0, "listening on 8080"),
            (T0 + 1000, "GET / 200"))  # fmt: skip
    lines, token = service.logs(ALICE, session.id, since=None, limit=10, token=None)
    assert [line.message for line in lines] == ["listening on 8080", "GET / 200"]
    assert lines[0].at == T0 / 1000 and token
    printed(aws, config, task_arn, (T0 + 2000, "GET /x 404"))
    more, _ = service.logs(ALICE, session.id, since=None, limit=10, token=token)
    assert [line.message for line in more] == ["GET /x 404"]  # only what came after
    later, _ = service.logs(ALICE, session.id, since=T0 / 1000 + 0.5, limit=10, token=None)
    assert [line.message for line in later] == ["GET / 200", "GET /x 404"]
    long_ago, _ = service.logs(ALICE, session.id, since=-4.6e10, limit=10, token=None)
    assert len(long_ago) == 3  # a time before 1970 (the fuzzer's year 524) is the start
    with pytest.raises(DomainError) as garbage:  # the fuzzer's: never a 500
        service.logs(ALICE, session.id, since=None, limit=10, token="[Filtered]")
    assert (status_of(garbage.value), garbage.value.code) == (400, "invalid_request")
    with pytest.raises(DomainError) as raised:
        service.logs(BOB, session.id, since=None, limit=10, token=None)
    assert status_of(raised.value) == 404  # someone else's session does not exist


def test_a_failed_session_quotes_its_containers_last_lines(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, task_arn = started(service, aws, config)
    printed(aws, config, task_arn, *[(T0 + n, f"line {n}") for n in range(8)],
            (T0 + 100, "Error: cannot open /data/db: permission denied"))  # fmt: skip
    (task,) = tasks_in_cluster(aws, config)
    crashed = {
        **task,
        "lastStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "containers": [{"name": "session", "exitCode": 1}],
        "tags": [{"key": "berth:session-id", "value": session.id}],
    }
    failed = service.on_task_event(crashed)
    assert failed is not None and failed.status == Status.FAILED
    assert failed.error is not None
    assert failed.error.startswith("Essential container in task exited (exit codes [1])")
    assert failed.error.endswith(
        "its last lines: line 4 | line 5 | line 6 | line 7 | "
        "Error: cannot open /data/db: permission denied"
    )
