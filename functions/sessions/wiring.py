"""Builds the session service from the environment, once per cold start."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from sessions.activity import Activity
from sessions.config import SessionsConfig
from sessions.logs import ContainerLogs
from sessions.models import Session, SessionOut
from sessions.repository import SessionRepository
from sessions.routing import Routes
from sessions.service import NullNotifier, SessionService
from sessions.storage import Volumes
from sessions.tasks import TaskRunner
from shared.live import ConnectionStore, Publisher, user_topic
from shared.usage import UsageConfig, metering_of


class SessionPush:
    """Tells the owner's WebSocket connections that a session changed."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def session_changed(self, session: Session) -> None:
        message = {"type": "session", "session": SessionOut.of(session).model_dump(mode="json")}
        self.publisher.publish(user_topic(session.user), message)


def build_service(
    config: SessionsConfig,
    *,
    session: Any = None,
    clock: Callable[[], float] = time.time,
    usage: UsageConfig | None = None,
) -> SessionService:
    if session is None:
        import boto3  # on first use, not at import: a cold start that needs no AWS pays nothing

        session = boto3.session.Session()
    aws = session
    dynamodb = aws.resource("dynamodb")
    notifier: SessionPush | NullNotifier = NullNotifier()
    if config.connections_table and config.websocket_endpoint:
        store = ConnectionStore(dynamodb.Table(config.connections_table), clock)
        management = aws.client("apigatewaymanagementapi", endpoint_url=config.websocket_endpoint)
        notifier = SessionPush(Publisher(store, management))
    repository = SessionRepository(dynamodb.Table(config.sessions_table))
    ecs = aws.client("ecs")
    return SessionService(
        config=config,
        repository=repository,
        tasks=TaskRunner(
            ecs,
            cluster_arn=config.cluster_arn,
            subnets=config.task_subnets,
            security_groups=config.task_security_groups,
            assign_public_ip=config.assign_public_ip,
        ),
        notifier=notifier,
        clock=clock,
        routes=Routes(
            aws.client("elbv2"),
            listener_arn=config.routing_listener_arn,
            vpc_id=config.routing_vpc_id or "",
            domain=config.routing_domain or "",
            tag=config.routing_tag or "",
            url_format=config.routing_url_format,
        )
        if config.routing_listener_arn
        else None,
        volumes=Volumes(
            efs=aws.client("efs"),
            ecs=ecs,
            repository=repository,
            file_system_id=config.storage_file_system,
            clock=clock,
        )
        if config.storage_file_system
        else None,
        container_logs=ContainerLogs(aws.client("logs")),
        metering=metering_of(usage, aws, clock),
    )


def build_activity(service: SessionService, *, session: Any = None) -> Activity:
    """What the reaper asks before it calls a session idle, reading container output through
    the service's own log reader (only the reaper: the API's cold start makes no CloudWatch
    client)."""
    if session is None:
        import boto3

        session = boto3.session.Session()
    return Activity(
        session.client("cloudwatch"),
        service.container_logs,
        listener_arn=service.config.routing_listener_arn,
        period_seconds=service.config.activity_period_seconds,
    )


@cache
def service_from_env() -> SessionService:
    return build_service(SessionsConfig.from_env(), usage=UsageConfig.from_env())


@cache
def activity_from_env() -> Activity:
    return build_activity(service_from_env())
