"""EventBridge "Step Functions Execution Status Change" (the chooser's executions, ended) →
the job's usage, recorded once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

logger = Logger()
metrics = Metrics()


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from jobs.wiring import service_from_env  # on first use: most of a cold start

    usage = service_from_env().meter(event.get("detail") or {})
    if usage is not None:
        logger.info("job usage", extra={"unit": usage.id, "seconds": usage.seconds})
    return {"unit": usage.id if usage else None}
