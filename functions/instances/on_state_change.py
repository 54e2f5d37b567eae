"""EventBridge "EC2 Instance State-change Notification" (a machine stopped running) → its
instance's usage, recorded once per launch. Machines that are not berth's are ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

logger = Logger()
metrics = Metrics()


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from instances.wiring import service_from_env  # on first use: most of a cold start

    ec2_id = str((event.get("detail") or {}).get("instance-id") or "")
    try:
        at = datetime.fromisoformat(str(event.get("time")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        logger.warning("state change without a time", extra={"instance": ec2_id})
        return {"unit": None}
    usage = service_from_env().meter(ec2_id, at) if ec2_id else None
    if usage is not None:
        logger.info("instance usage", extra={"unit": usage.id, "seconds": usage.seconds})
    return {"unit": usage.id if usage else None}
