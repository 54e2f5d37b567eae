"""A moto account with berth's jobs resources (tables from the template) and the service."""

from __future__ import annotations

import json

import boto3
import pytest

from jobs.config import JobsConfig
from jobs.service import JobService
from jobs.wiring import build_service
from tests.aws import FakeClock, create_table_like
from tests.synth import Synth

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/berth-client/bob"


@pytest.fixture
def environment(aws: boto3.session.Session, synth: Synth) -> dict[str, str]:
    create_table_like(aws.client("dynamodb"), synth, "JobsTable", "jobs")
    s3 = aws.client("s3")
    for bucket in ("results", "failures"):
        s3.create_bucket(Bucket=bucket)
    role = aws.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}", Path="/")[
        "Role"
    ]["Arn"]
    machine = aws.client("stepfunctions").create_state_machine(
        name="berth-jobs",
        definition=json.dumps({"StartAt": "x", "States": {"x": {"Type": "Succeed"}}}),
        roleArn=role,
    )["stateMachineArn"]
    return JobsConfig.environment(
        jobs_table="jobs",
        state_machine_arn=machine,
        results_bucket="results",
        failures_bucket="failures",
        catalogue=json.dumps(
            {
                "checksum": {"runtime": "lambda", "memory": 512},
                "render": {"runtime": "fargate", "cpu": 1024, "memory": 2048},
            }
        ),
        result_url_seconds=300,
    )


@pytest.fixture
def config(environment: dict[str, str]) -> JobsConfig:
    return JobsConfig.from_env(environment)


@pytest.fixture
def service(config: JobsConfig, aws: boto3.session.Session, clock: FakeClock) -> JobService:
    return build_service(config, session=aws, clock=clock)


def finish(execution_arn: str, status: str, error: str = "", cause: str = "") -> None:
    """Plays Step Functions: ends an execution (moto's API cannot)."""
    from moto.core.utils import utcnow
    from moto.stepfunctions.models import stepfunctions_backends

    backend = stepfunctions_backends["123456789012"]["us-east-1"]
    execution = backend.describe_execution(execution_arn)
    execution.status = status
    execution.stop_date = utcnow()
    execution.error = error or None
    execution.cause = cause or None
