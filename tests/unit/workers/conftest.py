"""A moto account with the workers' table (from the template), queue and workspaces bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from berth_worker.protection import TaskProtection
from berth_worker.sync import WorkspaceSync
from berth_worker.worker import Worker
from tests.aws import FakeClock, create_table_like
from tests.synth import Synth
from workers.config import WorkersConfig
from workers.repository import WorkersRepository
from workers.service import CommandService
from workers.wiring import build_service

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/berth-client/bob"
BUCKET = "workspaces"


@pytest.fixture
def environment(aws: boto3.session.Session, synth: Synth) -> dict[str, str]:
    create_table_like(aws.client("dynamodb"), synth, "WorkersTable", "workers")
    queue = aws.client("sqs").create_queue(
        QueueName="commands", Attributes={"VisibilityTimeout": "900"}
    )["QueueUrl"]
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return WorkersConfig.environment(
        workers_table="workers", queue_url=queue, workspaces_bucket=BUCKET, command_max_chars=200
    )


@pytest.fixture
def config(environment: dict[str, str]) -> WorkersConfig:
    return WorkersConfig.from_env(environment)


@pytest.fixture
def service(config: WorkersConfig, aws: boto3.session.Session, clock: FakeClock) -> CommandService:
    return build_service(config, session=aws, clock=clock)


class Frames:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, channel: str, message: dict[str, Any]) -> int:
        self.sent.append((channel, message))
        return 1

    def output(self) -> str:
        return "".join(m["data"] for _, m in self.sent if m["type"] == "output")


@pytest.fixture
def frames() -> Frames:
    return Frames()


@pytest.fixture
def worker(
    config: WorkersConfig,
    aws: boto3.session.Session,
    frames: Frames,
    tmp_path: Path,
) -> Worker:
    s3 = aws.client("s3")
    return Worker(
        sqs=aws.client("sqs"),
        queue_url=config.queue_url,
        repository=WorkersRepository(aws.resource("dynamodb").Table("workers")),
        sync=WorkspaceSync(s3, BUCKET, tmp_path / "workspaces"),
        s3=s3,
        bucket=BUCKET,
        publish=frames,
        protection=TaskProtection(None, 5),
        idle_seconds=1,
        command_timeout=10,
        stop_grace=5,
    )
