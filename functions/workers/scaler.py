"""Scheduled (and woken by each queued command): size the worker fleet to the backlog."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workers.config import ScalerConfig
from workers.fleet import Fleet
from workers.scaling import Limits, Observed, berth_launch

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def scale(config: ScalerConfig, sqs: Any, fleet: Fleet) -> dict[str, Any]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=config.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    running, starting = fleet.counts()
    observed = Observed(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        running=running,
        starting=starting,
    )
    limits = Limits(config.messages_per_task, config.min_tasks, config.max_tasks)
    wanted = berth_launch(
        observed,
        limits,
        start_delay=config.start_delay_seconds,
        expected_seconds=config.expected_command_seconds,
    )
    started, failures = fleet.launch(wanted) if wanted else (0, [])
    return {
        "observed": observed.__dict__,
        "launch": wanted,
        "started": started,
        "failures": failures,
    }


@cache
def _parts() -> tuple[ScalerConfig, Any, Fleet]:
    config = ScalerConfig.from_env()
    fleet = Fleet(
        boto3.client("ecs"),
        cluster_arn=config.cluster_arn,
        task_definition=config.worker_task_definition,
        family=config.worker_family,
        subnets=[s for s in config.task_subnets.split(",") if s],
        security_groups=[s for s in config.task_security_groups.split(",") if s],
        assign_public_ip=config.assign_public_ip,
    )
    return config, boto3.client("sqs"), fleet


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = scale(*_parts())
    observed = result["observed"]
    metrics.add_metric(name="QueueVisible", unit=MetricUnit.Count, value=observed["visible"])
    metrics.add_metric(name="QueueInFlight", unit=MetricUnit.Count, value=observed["in_flight"])
    metrics.add_metric(name="RunningWorkers", unit=MetricUnit.Count, value=observed["running"])
    metrics.add_metric(name="StartingWorkers", unit=MetricUnit.Count, value=observed["starting"])
    metrics.add_metric(name="LaunchedWorkers", unit=MetricUnit.Count, value=result["started"])
    logger.info("scaled", extra=result)
    return result
