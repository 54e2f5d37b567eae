"""API Gateway → workspace command routes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.api import make_resolver
from workers.routes import router
from workers.wiring import service_from_env

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = make_resolver(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    app.append_context(workers=service_from_env())  # type: ignore[no-untyped-call]
    return app.resolve(event, context)
