"""Jobs API logic against moto: validation, idempotent starts, status and presigned URLs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from jobs.config import JobsConfig
from jobs.models import JobStatus
from jobs.service import JobService
from shared.api import status_of
from shared.errors import DomainError
from tests.aws import FakeClock
from tests.unit.jobs.conftest import ALICE, BOB, finish


def executions(aws: boto3.session.Session, config: JobsConfig) -> list[dict[str, Any]]:
    sfn = aws.client("stepfunctions")
    return list(sfn.list_executions(stateMachineArn=config.state_machine_arn)["executions"])


def execution_arn(config: JobsConfig, job_id: str) -> str:
    return f"{config.state_machine_arn.replace(':stateMachine:', ':execution:')}:{job_id}"


def test_start_runs_an_execution_named_by_the_job_id(
    service: JobService, aws: boto3.session.Session, config: JobsConfig
) -> None:
    job, started = service.start(ALICE, "checksum", {"text": "hi"}, None)
    assert started is True
    assert (job.status, job.job.name, job.job.runtime) == (JobStatus.RUNNING, "checksum", "lambda")
    (execution,) = executions(aws, config)
    assert execution["name"] == job.id
    described = aws.client("stepfunctions").describe_execution(
        executionArn=execution["executionArn"]
    )
    assert json.loads(described["input"]) == {"name": "checksum", "input": {"text": "hi"}}


def test_the_same_idempotency_key_returns_the_same_job(
    service: JobService, aws: boto3.session.Session, config: JobsConfig
) -> None:
    first, started = service.start(ALICE, "checksum", {"text": "hi"}, "order-17")
    again, started_again = service.start(ALICE, "checksum", {"text": "hi"}, "order-17")
    assert (started, started_again) == (True, False)
    assert again.id == first.id
    assert len(executions(aws, config)) == 1
    # another caller's identical key is another job
    bobs, _ = service.start(BOB, "checksum", {"text": "hi"}, "order-17")
    assert bobs.id != first.id


def test_reusing_a_key_for_a_different_request_is_a_409(service: JobService) -> None:
    service.start(ALICE, "checksum", {"text": "hi"}, "order-17")
    with pytest.raises(DomainError) as raised:
        service.start(ALICE, "checksum", {"text": "bye"}, "order-17")
    assert (status_of(raised.value), raised.value.code) == (409, "idempotency_key_reused")


def test_unknown_job_never_starts_anything(
    service: JobService, aws: boto3.session.Session, config: JobsConfig
) -> None:
    with pytest.raises(DomainError) as raised:
        service.start(ALICE, "mine-bitcoin", {}, None)
    assert (status_of(raised.value), raised.value.code) == (400, "unknown_job")
    assert "checksum, render" in raised.value.message
    assert executions(aws, config) == []


@pytest.mark.parametrize(("name", "limit"), [("render", 6 * 1024), ("checksum", 200 * 1024)])
def test_input_over_the_runtimes_limit_is_a_400(
    service: JobService, aws: boto3.session.Session, config: JobsConfig, name: str, limit: int
) -> None:
    with pytest.raises(DomainError) as raised:
        service.start(ALICE, name, {"blob": "x" * limit}, None)
    assert (status_of(raised.value), raised.value.code) == (400, "input_too_large")
    assert str(limit) in raised.value.message
    assert executions(aws, config) == []


def test_succeeded_job_has_a_presigned_result_url(service: JobService, config: JobsConfig) -> None:
    job, _ = service.start(ALICE, "checksum", {}, None)
    finish(execution_arn(config, job.id), "SUCCEEDED")
    done = service.get(ALICE, job.id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.result_url
    url = urlsplit(done.result_url)
    assert url.path.endswith(f"/results/{job.id}.zip")
    assert "Signature=" in url.query or "X-Amz-Signature=" in url.query
    assert done.error is None


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_failed_job_has_the_error_and_a_failure_url(
    service: JobService, config: JobsConfig, status: str
) -> None:
    job, _ = service.start(ALICE, "render", {}, None)
    finish(execution_arn(config, job.id), status, "NonZeroExit", "exit code 1")
    failed = service.get(ALICE, job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("NonZeroExit", "exit code 1")
    assert failed.error.failure_url
    assert f"/failures/{job.id}.zip" in failed.error.failure_url
    assert failed.result_url is None


def test_a_failed_job_shows_its_own_error_once_its_summary_is_written(
    service: JobService, config: JobsConfig, aws: boto3.session.Session
) -> None:
    job, _ = service.start(ALICE, "render", {}, None)
    finish(execution_arn(config, job.id), "FAILED", "JobFailed", '{"raw": "ECS JSON"}')
    aws.client("s3").put_object(
        Bucket="failures",
        Key=f"failures/{job.id}.json",
        Body=b'{"code": "JobInputError", "message": "frames must be 1..100"}',
    )
    error = service.get(ALICE, job.id).error
    assert error is not None
    assert (error.code, error.message) == ("JobInputError", "frames must be 1..100")
    (listed,), _ = service.list_jobs(ALICE, 10, None)
    assert listed.error == error  # list items and GET agree


def test_the_list_is_newest_first_whatever_the_ids(service: JobService, clock: FakeClock) -> None:
    """A keyed job's id is a hash (it sorts anywhere); the list goes by creation time."""
    order = []
    for n in range(4):
        clock.advance(1)
        key = f"key-{n}" if n % 2 == 0 else None
        order.append(service.start(ALICE, "checksum", {"n": n}, key)[0].id)
    listed, _ = service.list_jobs(ALICE, 10, None)
    assert [job.id for job in listed] == order[::-1]


def test_callers_see_only_their_jobs(service: JobService, clock: FakeClock) -> None:
    mine, _ = service.start(ALICE, "checksum", {}, None)
    clock.advance(1)
    newer, _ = service.start(ALICE, "render", {}, None)
    service.start(BOB, "checksum", {}, None)
    with pytest.raises(DomainError) as raised:
        service.get(BOB, mine.id)
    assert status_of(raised.value) == 404
    listed, token = service.list_jobs(ALICE, 10, None)
    assert [j.id for j in listed] == [newer.id, mine.id]
    assert token is None
