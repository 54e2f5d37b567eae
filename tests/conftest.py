"""Shared fixtures. No test may reach a real AWS account: fake credentials are forced."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import boto3
import pytest
from moto import mock_aws

from tests.aws import FakeClock
from tests.synth import Synth, deployment_context, synthesize

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "berth-tests",
    "POWERTOOLS_SERVICE_NAME": "berth-tests",
}


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)


@dataclass
class FakeLambdaContext:
    function_name: str = "berth-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:berth-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The test deployment (``tests/synth.py``'s settings), built once per test process."""
    return synthesize(deployment_context(), tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture
def aws() -> Iterator[boto3.session.Session]:
    """An emulated account (moto, in-process) for one test."""
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
