"""EventBridge "ECS Task State Change" (a worker task stopped) → its user's usage."""

from __future__ import annotations

import time
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

if TYPE_CHECKING:
    from shared.usage import Metering
    from workers.config import ScalerConfig
    from workers.reserve import FleetRegistry

logger = Logger()
metrics = Metrics()


@cache
def _parts() -> tuple[ScalerConfig, FleetRegistry, Metering | None]:
    import boto3  # on the first event: settings, AWS clients, boto3 are most of a cold start

    from shared.usage import UsageConfig, metering_of
    from workers.config import ScalerConfig
    from workers.reserve import FleetRegistry

    config = ScalerConfig.from_env()
    session = boto3.session.Session()
    registry = FleetRegistry(session.resource("dynamodb").Table(config.workers_table))
    return config, registry, metering_of(UsageConfig.from_env(), session, time.time)


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from workers.metering import meter_worker

    config, registry, metering = _parts()
    if metering is None:
        return {"unit": None}
    usage = meter_worker(
        event.get("detail") or {},
        registry=registry,
        metering=metering,
        cpu=config.worker_cpu,
        memory_mib=config.worker_memory,
        clock=time.time,
    )
    if usage is not None:
        logger.info("worker usage", extra={"unit": usage.id, "seconds": usage.seconds})
    return {"unit": usage.id if usage else None}
