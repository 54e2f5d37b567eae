"""Live updates: the WebSocket API, its connections table, and the tickets that open it.

A WebSocket connection opens with a single-use ticket (``?ticket=``, checked by a Lambda
authorizer on ``$connect``), never with AWS keys: SigV4 clients get theirs from
``POST /live/tickets`` on the IAM-authenticated REST API, browsers get a one-topic,
listen-only one their owner asked for (a terminal's connect URL). API Gateway authorizes a
WebSocket API's ``$connect`` with IAM or a Lambda authorizer, not both; tickets minted by the
REST API serve both kinds of client through one WebSocket API, so every publisher posts to one
management endpoint.

Capabilities use it, it uses none of them: ``live.environment()`` with
``live.grant_publish(function)`` give a function what ``shared.live.Publisher`` needs;
``live.grant_topics(function)`` lets a capability grant its topics to their owners
(``ConnectionStore.grant``), which is all ``subscribe`` checks, and mint tickets for them.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.api import BerthApi
from infra.functions import LambdaBaseline
from infra.nag import acknowledge, acknowledge_wildcard
from infra.settings import ApiSettings
from infra.storage import secure_table
from live.config import LiveConfig
from live.routes import router as tickets_router
from shared.api import routes_of


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> Any:
        return apigw.AccessLogFormat.json_with_standard_fields(
            caller=True,
            http_method=False,
            ip=True,
            protocol=True,
            request_time=True,
            resource_path=False,
            response_length=False,
            status=True,
            user=True,
        )


class LiveUpdates(Construct):
    """Exposes ``table``, ``api``, ``stage``, ``function`` and ``callback_url``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ApiSettings,
        baseline: LambdaBaseline,
        api: BerthApi,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = secure_table(
            self,
            "Connections",
            removal_policy=RemovalPolicy.DESTROY,  # connections are ephemeral by nature
            sort_key="sk",
            ttl_attribute="expires_at",
        )
        self.api = apigwv2.WebSocketApi(
            self,
            "WebSocketApi",
            api_name=f"{name}-live",
            description="berth live updates: session status and terminal output",
        )
        self.stage = self._stage(settings, log_retention, removal_policy)
        self.callback_url = self.stage.callback_url
        self.function = baseline.function(
            self,
            "Handler",
            handler="live.handler.handler",
            service="live",
            description="WebSocket $connect/$disconnect/$default",
            environment=self.environment(),
        )
        self.grant_publish(self.function)
        self.authorizer = self._authorizer(baseline)
        self._connect_routes()
        self.tickets = self._tickets(baseline, api)
        CfnOutput(self, "WebSocketUrl", key="WebSocketUrl", value=self.stage.url)

    def _stage(
        self,
        settings: ApiSettings,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> apigwv2.WebSocketStage:
        """Deployed on every change, access-logged, throttled like the REST API."""
        return apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=settings.stage_name,
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(
                logs.LogGroup(
                    self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
                )
            ),
            throttle=apigwv2.ThrottleSettings(
                rate_limit=settings.throttling_rate_limit,
                burst_limit=settings.throttling_burst_limit,
            ),
        )

    def _connect_routes(self) -> None:
        """``$connect`` behind the ticket authorizer; ``$disconnect``, ``$default``."""
        integration = integrations.WebSocketLambdaIntegration("Integration", self.function)
        self.api.add_route("$connect", integration=integration, authorizer=self.authorizer)
        self.api.add_route("$disconnect", integration=integration)
        self.api.add_route("$default", integration=integration, return_response=True)
        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "Only $connect can carry an authorizer on a WebSocket API; it requires a ticket. "
            "$disconnect/$default run on the already-authenticated connection.",
        )

    def _authorizer(self, baseline: LambdaBaseline) -> authorizers.WebSocketLambdaAuthorizer:
        """Redeems ``?ticket=`` (deletes it: single use) and nothing else of the table."""
        function = baseline.function(
            self,
            "Authorizer",
            handler="live.authorizer.handler",
            service="live",
            description="WebSocket $connect: redeems a single-use ticket",
            environment=self.environment(),
        )
        function.add_to_role_policy(self._items("dynamodb:DeleteItem", "TICKET#*"))
        return authorizers.WebSocketLambdaAuthorizer(
            "Tickets", function, identity_source=["route.request.querystring.ticket"]
        )

    def _tickets(self, baseline: LambdaBaseline, api: BerthApi) -> lambda_.Function:
        """``POST /live/tickets``: mints the caller's ticket and nothing else."""
        function = baseline.function(
            self,
            "Tickets",
            handler="live.api.handler",
            service="live",
            description="POST /live/tickets: a ticket that opens the caller's connection",
            environment=self.environment(),
        )
        function.add_to_role_policy(self._items("dynamodb:PutItem", "TICKET#*"))
        api.add_routes(function, routes_of(tickets_router))
        return function

    def _items(self, action: str, *keys: str) -> iam.PolicyStatement:
        """``action`` on the table's items whose partition key is like one of ``keys``."""
        return iam.PolicyStatement(
            actions=[action],
            resources=[self.table.table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(keys)}},
        )

    def environment(self) -> dict[str, str]:
        return LiveConfig.environment(
            connections_table=self.table.table_name,
            websocket_endpoint=self.callback_url,
            websocket_url=self.stage.url,
        )

    def grant_topics(self, function: lambda_.Function) -> None:
        """Write grants (``GRANT#<scope>``) and tickets (``TICKET#``) — nothing else."""
        function.add_to_role_policy(self._items("dynamodb:PutItem", "GRANT#*", "TICKET#*"))

    def grant_publish(self, function: lambda_.Function) -> None:
        """Read subscribers (and forget gone ones) and post to connections."""
        self.table.grant_read_write_data(function)
        self.grant_post(function, "scoped to this API's stage")

    def grant_post(self, grantee: lambda_.Function | iam.IRole, why: str) -> None:
        """Post to this API's connections (the management API), and nothing else."""
        self.stage.grant_management_api_access(grantee)
        acknowledge_wildcard(
            grantee,
            Stack.of(self).format_arn(
                service="execute-api",
                resource=self.api.api_id,
                resource_name=f"{self.stage.stage_name}/*/@connections/*",
            ),
            f"Connection ids are made by API Gateway at run time; {why}.",
        )
