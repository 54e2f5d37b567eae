"""A moto account with the workers' table (from the template), the DLQ that users' queues
redrive to, and the workspaces bucket; a command service and workers (bound to alice unless
told otherwise) over it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from berth_worker.access import AccessBroker
from berth_worker.isolation import Isolation
from berth_worker.protection import TaskProtection
from berth_worker.worker import Worker
from infra.sandbox.moto_bridges import keep_fifo_promises
from tests.aws import create_table_like
from tests.synth import Synth
from workers.config import WorkersConfig
from workers.models import Command
from workers.repository import WorkersRepository
from workers.service import CommandService
from workers.tenancy import queue_name
from workers.wiring import build_service

ALICE = "arn:aws:sts::123456789012:assumed-role/berth-client/alice"
BOB = "arn:aws:sts::123456789012:assumed-role/berth-client/bob"
BUCKET = "workspaces"
TABLE = "workers"
MAX_RECEIVES = 2
QUEUE_PREFIX = "berth-u-"


@pytest.fixture
def environment(aws: boto3.session.Session, synth: Synth) -> dict[str, str]:
    keep_fifo_promises()
    create_table_like(aws.client("dynamodb"), synth, "WorkersTable", TABLE)
    sqs = aws.client("sqs")
    fifo = {"FifoQueue": "true", "VisibilityTimeout": "30"}
    dlq = sqs.create_queue(QueueName="commands-dlq.fifo", Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return {
        **WorkersConfig.environment(
            workers_table=TABLE,
            user_queue_prefix=QUEUE_PREFIX,
            dead_letter_queue_arn=dlq_arn["QueueArn"],
            lease_seconds=30,
            max_receive_count=MAX_RECEIVES,
            workspaces_bucket=BUCKET,
            command_max_chars=200,
            max_pending_per_user=5,
            log_url_seconds=60,
            max_file_bytes=1024,
            connect_url_seconds=60,
        ),
        "DLQ_URL": dlq,
    }


def user_queue(aws: boto3.session.Session, user: str = "") -> str:
    """The URL of ``user``'s command queue (alice's by default); made on their first command."""
    return str(
        aws.client("sqs").get_queue_url(QueueName=queue_name(QUEUE_PREFIX, user or ALICE))[
            "QueueUrl"
        ]
    )


@pytest.fixture
def config(environment: dict[str, str]) -> WorkersConfig:
    return WorkersConfig.from_env(environment)


@pytest.fixture
def dead_letter_queue(environment: dict[str, str]) -> str:
    return environment["DLQ_URL"]


@pytest.fixture
def repository(aws: boto3.session.Session, environment: dict[str, str]) -> WorkersRepository:
    return WorkersRepository(aws.resource("dynamodb").Table(TABLE))


@pytest.fixture
def service(config: WorkersConfig, aws: boto3.session.Session) -> CommandService:
    return build_service(config, session=aws)


def queue(service: CommandService, user: str, project: str, terminal: str, text: str) -> Command:
    """A command queued as ``POST .../commands`` queues it (no idempotency key: always new)."""
    command, queued = service.submit(user, project, terminal, text)
    assert queued
    return command


class Frames:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, channel: str, message: dict[str, Any]) -> int:
        self.sent.append((channel, message))
        return 1

    def of(self, command_id: str) -> list[dict[str, Any]]:
        return [m for _, m in self.sent if m["command_id"] == command_id]

    def output(self, command_id: str | None = None) -> str:
        return "".join(
            m["data"]
            for _, m in self.sent
            if m["type"] == "output" and command_id in (None, m["command_id"])
        )


@pytest.fixture
def frames() -> Frames:
    return Frames()


MakeWorker = Callable[..., Worker]


@pytest.fixture
def make_worker(
    config: WorkersConfig, aws: boto3.session.Session, frames: Frames, tmp_path: Path
) -> MakeWorker:
    """A worker with its own scratch directory (as each Fargate task has its own disk)."""
    made = 0

    def make(**overrides: Any) -> Worker:
        nonlocal made
        made += 1
        settings: dict[str, Any] = {
            "sqs": aws.client("sqs"),
            "queue_prefix": QUEUE_PREFIX,
            "user": ALICE,
            "access": AccessBroker(aws, TABLE, None),
            "bucket": BUCKET,
            "workdir": tmp_path / f"worker-{made}",
            "name": f"worker-{made}-{tmp_path.name}",
            "publish": frames,
            "protection": TaskProtection(None, 5),
            "isolation": Isolation(None),
            "idle_seconds": 1,
            "keep_warm_seconds": 1,
            "command_timeout": 10,
            "lease_seconds": 30,
            "stop_grace": 5,
            "cancel_grace": 1,
        }
        return Worker(**(settings | overrides))

    return make


@pytest.fixture
def worker(make_worker: MakeWorker) -> Worker:
    return make_worker()


def receive(aws: boto3.session.Session, queue_url: str, visibility: int = 30) -> dict[str, Any]:
    (message,) = aws.client("sqs").receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=visibility
    )["Messages"]
    return dict(message)
