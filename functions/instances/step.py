"""The provisioning workflow's Lambda step: ``{"step", "instance_id", "error"?}`` → outcome."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.errors import named_if_unavailable
from shared.telemetry import instrumented

logger = Logger()
metrics = Metrics()


def describe_error(error: Any) -> str | None:
    """A Catch hands over ``{"Error", "Cause"}``; keep it readable and bounded."""
    if isinstance(error, dict):
        return f"{error.get('Error', 'Error')}: {error.get('Cause', '')}"[:1000]
    return str(error)[:1000] if error else None


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from instances.wiring import (
        provisioner_from_env,  # on first use: logic and AWS clients are most of a cold start
    )

    step, instance_id = str(event["step"]), str(event["instance_id"])
    try:
        outcome = provisioner_from_env().run(step, instance_id, describe_error(event.get("error")))
    except Exception as exc:  # AWS's passing trouble gets the name the workflow retries
        raise named_if_unavailable(exc) from exc
    logger.info("step", extra={"step": step, "instance": instance_id, "outcome": outcome})
    return {"outcome": outcome}
