"""Live updates: the WebSocket API (IAM-authenticated ``$connect``) and its connections table.

Capabilities use it, it uses none of them: ``live.environment()`` with
``live.grant_publish(function)`` give a function what ``shared.live.Publisher`` needs;
``live.grant_topics(function)`` lets a capability grant its topics to their owners
(``ConnectionStore.grant``), which is all ``subscribe`` checks.
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

from infra.functions import LambdaBaseline
from infra.nag import acknowledge, acknowledge_wildcard
from infra.settings import ApiSettings
from infra.storage import secure_table
from live.config import LiveConfig


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
        self.stage = apigwv2.WebSocketStage(
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
        self.callback_url = self.stage.callback_url
        self.function = baseline.function(
            self,
            "Handler",
            handler="live.handler.handler",
            service="live",
            description="WebSocket $connect/$disconnect/$default",
            environment=LiveConfig.environment(
                connections_table=self.table.table_name, websocket_endpoint=self.callback_url
            ),
        )
        self.grant_publish(self.function)
        integration = integrations.WebSocketLambdaIntegration("Integration", self.function)
        self.api.add_route(
            "$connect", integration=integration, authorizer=authorizers.WebSocketIamAuthorizer()
        )
        self.api.add_route("$disconnect", integration=integration)
        self.api.add_route("$default", integration=integration, return_response=True)
        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "Only $connect can carry an authorizer on a WebSocket API; it requires IAM (SigV4). "
            "$disconnect/$default run on the already-authenticated connection.",
        )
        CfnOutput(self, "WebSocketUrl", key="WebSocketUrl", value=self.stage.url)

    def environment(self) -> dict[str, str]:
        return LiveConfig.environment(
            connections_table=self.table.table_name, websocket_endpoint=self.callback_url
        )

    def grant_topics(self, function: lambda_.Function) -> None:
        """Write grants (``GRANT#<scope>`` items) and nothing else of the table."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem"],
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["GRANT#*"]}},
            )
        )

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
