"""The WebSocket API's ``$connect`` authorizer: a single-use ticket in ``?ticket=``.

Allowed: API Gateway opens the connection and hands ``$connect`` the ticket's user and topic
(``requestContext.authorizer``). An unknown, used or expired ticket: denied (403), and the
connection never opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponseWebSocket,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.telemetry import instrumented

if TYPE_CHECKING:
    from shared.live import Ticket

logger = Logger()
metrics = Metrics()


def decide(event: dict[str, Any], redeem: Any) -> dict[str, Any]:
    request = APIGatewayAuthorizerRequestEvent(event)
    secret = (request.query_string_parameters or {}).get("ticket") or ""
    ticket: Ticket | None = redeem(secret)
    if ticket is None:
        logger.info("ticket refused")
        response = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
            request.method_arn, principal_id="anonymous"
        )
        response.deny_all_routes()
        return response.asdict()
    response = APIGatewayAuthorizerResponseWebSocket.from_route_arn(
        request.method_arn,
        principal_id=ticket.user,
        context={"user": ticket.user, "topic": ticket.topic or ""},
    )
    response.allow_all_routes()
    return response.asdict()


@instrumented(logger, metrics)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from live.wiring import service_from_env  # on the first event: boto3, the table

    return decide(event, service_from_env().tickets.redeem)
