"""API Gateway → instances routes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from instances.routes import router
from instances.wiring import service_from_env
from shared.api import make_resolver

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = make_resolver(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app.append_context(instances=service_from_env())  # type: ignore[no-untyped-call]
    return app.resolve(event, context)
