"""EventBridge "ECS Task State Change" (berth's cluster only) → session status + push."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

logger = Logger()
metrics = Metrics()


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from sessions.wiring import (
        service_from_env,  # on first use: logic and AWS clients are most of a cold start
    )

    detail = event.get("detail") or {}
    if "taskArn" not in detail:
        logger.warning("not a task state change", extra={"detail_type": event.get("detail-type")})
        return {"session": None}
    session = service_from_env().on_task_event(detail)
    if session is not None:
        metrics.add_metric(name="SessionTaskEvents", unit=MetricUnit.Count, value=1)
        logger.info(
            "task event applied",
            extra={"session_id": session.id, "status": session.status.value},
        )
    return {
        "session": session.id if session else None,
        "status": session.status if session else None,
    }
