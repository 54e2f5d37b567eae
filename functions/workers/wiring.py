"""Builds the command service from the environment, once per cold start."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from shared.live import ConnectionStore, Tickets
from shared.usage import UsageConfig, metering_of
from workers.config import WorkersConfig
from workers.files import WorkspaceFiles
from workers.repository import WorkersRepository
from workers.service import CommandService


def build_service(
    config: WorkersConfig,
    *,
    session: Any = None,
    clock: Callable[[], float] = time.time,
    usage: UsageConfig | None = None,
) -> CommandService:
    if session is None:
        import boto3  # on first use, not at import: a cold start that needs no AWS pays nothing

        session = boto3.session.Session()
    aws = session
    dynamodb = aws.resource("dynamodb")
    connections = dynamodb.Table(config.connections_table) if config.connections_table else None
    live = ConnectionStore(connections, clock) if connections is not None else None
    return CommandService(
        config=config,
        repository=WorkersRepository(aws.resource("dynamodb").Table(config.workers_table)),
        sqs=aws.client("sqs"),
        s3=aws.client("s3"),
        lambda_client=aws.client("lambda"),
        clock=clock,
        live=live,
        tickets=Tickets(connections, clock) if connections is not None else None,
        metering=metering_of(usage, aws, clock),
    )


@cache
def service_from_env() -> CommandService:
    return build_service(WorkersConfig.from_env(), usage=UsageConfig.from_env())


def build_files(service: CommandService) -> WorkspaceFiles:
    """A project's files, owned as its commands are (the same service says whose it is)."""
    return WorkspaceFiles(
        config=service.config,
        s3=service.s3,
        owner=service.check_owner,
        claim=service.claim,
        clock=service.clock,
    )


@cache
def files_from_env() -> WorkspaceFiles:
    return build_files(service_from_env())
