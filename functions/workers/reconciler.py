"""Scheduled: end lost and undeliverable commands (see ``workers.reconcile``). Thin."""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

if TYPE_CHECKING:
    from workers.reconcile import Reconciler

logger = Logger()
metrics = Metrics()


@cache
def reconciler() -> Reconciler:
    # on the first event, not at import: settings, logic, boto3 are most of a cold start
    import boto3

    from shared.live import ConnectionStore, Publisher
    from shared.usage import UsageConfig, metering_of
    from workers.config import ReconcilerConfig
    from workers.reconcile import Reconciler
    from workers.repository import WorkersRepository

    config = ReconcilerConfig.from_env()
    dynamodb = boto3.resource("dynamodb")
    built = Reconciler(
        repository=WorkersRepository(dynamodb.Table(config.workers_table)),
        sqs=boto3.client("sqs"),
        dead_letter_queue_url=config.dead_letter_queue_url,
        clock=time.time,
        retire_after_seconds=config.reserve_window_seconds,
        metering=metering_of(UsageConfig.from_env(), boto3.session.Session(), time.time),
    )
    if config.connections_table and config.websocket_endpoint:
        built.publish = Publisher(
            ConnectionStore(dynamodb.Table(config.connections_table), time.time),
            boto3.client("apigatewaymanagementapi", endpoint_url=config.websocket_endpoint),
        ).publish
    return built


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ended = reconciler().run()
    if any(ended.values()):
        # Metrics and a log line only when something ended: an idle stack publishes none.
        metrics.add_metric(
            name="LostCommands", unit=MetricUnit.Count, value=len(ended["worker_lost"])
        )
        metrics.add_metric(
            name="UndeliverableCommands", unit=MetricUnit.Count, value=len(ended["undeliverable"])
        )
        metrics.add_metric(
            name="OverBudgetCommands", unit=MetricUnit.Count, value=len(ended["budget_exceeded"])
        )
        logger.warning("ended commands", extra=ended)
    return ended
