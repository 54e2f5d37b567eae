"""API: the REST API every capability adds its routes to, with IAM (SigV4) auth by default.

Capabilities call ``api.add_routes(function, routes_of(router))`` with the Powertools router
their function serves, so the routes are written once (the decorators); the paths must be
the same ones the function's Powertools router serves (a test compares them with the
OpenAPI document). Errors API Gateway produces itself (no credentials, throttled, unknown
route) are rewritten to berth's ``{"error": {"code", "message"}}`` shape.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from health.routes import router as health_router
from infra.functions import LambdaBaseline
from infra.nag import acknowledge
from infra.settings import ApiSettings
from openapi.config import OpenApiConfig
from shared.api import routes_of

Route = tuple[str, str]  # (HTTP method, path)


def error_template(code: str) -> str:
    """berth's error shape for an answer API Gateway gives itself (its message as is)."""
    return f'{{"error": {{"code": "{code}", "message": $context.error.messageString}}}}'


# What API Gateway answers before a function runs, in the codes berth's functions and the
# sandbox use (docs/api.md). None keeps the gateway's own status.
GATEWAY_ERRORS = [
    ("Unsigned", apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN, "401", "unauthenticated"),
    ("BadSignature", apigw.ResponseType.INVALID_SIGNATURE, None, "forbidden"),
    ("ExpiredToken", apigw.ResponseType.EXPIRED_TOKEN, None, "forbidden"),
    ("AccessDenied", apigw.ResponseType.ACCESS_DENIED, None, "forbidden"),
    ("Throttled", apigw.ResponseType.THROTTLED, None, "throttled"),
    ("TooLarge", apigw.ResponseType.REQUEST_TOO_LARGE, None, "payload_too_large"),
    ("BadBody", apigw.ResponseType.BAD_REQUEST_BODY, None, "invalid_request"),
    ("BadParameters", apigw.ResponseType.BAD_REQUEST_PARAMETERS, None, "invalid_request"),
    ("Default4xx", apigw.ResponseType.DEFAULT_4_XX, None, "bad_request"),
    ("Default5xx", apigw.ResponseType.DEFAULT_5_XX, None, "internal_error"),
]


class BerthApi(Construct):
    """Exposes ``rest_api`` and ``routes`` (every (method, path) it serves)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: ApiSettings,
        baseline: LambdaBaseline,
        document: OpenApiConfig,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stage_name = settings.stage_name
        self.rest_api = self._rest_api(settings, log_retention, removal_policy, name)
        self.validator = self.rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        for key, response_type, status, code in GATEWAY_ERRORS:
            self.rest_api.add_gateway_response(
                key,
                type=response_type,
                status_code=status,
                templates={"application/json": error_template(code)},
            )
        self.routes: list[Route] = []
        self._acknowledge()
        self._own_routes(baseline, document)
        CfnOutput(self, "ApiUrl", key="ApiUrl", value=self.rest_api.url, description="Base URL")

    def _rest_api(
        self,
        settings: ApiSettings,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        name: str,
    ) -> apigw.RestApi:
        """Regional, IAM-authorized by default, throttled, traced, access-logged as JSON."""
        access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        cors = (
            apigw.CorsOptions(allow_origins=settings.cors_allow_origins)
            if settings.cors_allow_origins
            else None
        )
        return apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=name,
            description="berth: per-user compute on demand",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=removal_policy,
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM
            ),
            default_cors_preflight_options=cors,
            deploy_options=apigw.StageOptions(
                stage_name=settings.stage_name,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=settings.throttling_rate_limit,
                throttling_burst_limit=settings.throttling_burst_limit,
            ),
        )

    def _acknowledge(self) -> None:
        """cdk-nag findings that are choices, each with its reason."""
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "WAF is an operator choice (cost, rules) layered on top; every method already "
            "requires SigV4-signed IAM credentials and is throttled.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role uses the AWS managed "
            "AmazonAPIGatewayPushToCloudWatchLogs policy, as AWS documents.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-COG4",
            "berth authorizes with IAM (SigV4) by default, not Cognito; the caller's identity "
            "comes from requestContext.identity.",
        )

    def _own_routes(self, baseline: LambdaBaseline, document: OpenApiConfig) -> None:
        """GET /health and GET /openapi.json (the document of every route)."""
        health = baseline.function(
            self,
            "Health",
            handler="health.handler.handler",
            service="health",
            description="GET /health: proves the API to Lambda path",
        )
        self.add_routes(health, routes_of(health_router))
        docs = baseline.function(
            self,
            "OpenApi",
            handler="openapi.handler.handler",
            service="openapi",
            description="GET /openapi.json: the OpenAPI document of every route",
            environment=OpenApiConfig.environment(**document.model_dump()),
        )
        self.add_routes(docs, [("GET", "/openapi.json")])

    def url_of(self, path: str) -> str:
        """A route's URL, built from the API's id and the stage's name (not from the stage
        resource: what the URL is given to may be something the stage's methods depend on)."""
        stack = Stack.of(self)
        return (
            f"https://{self.rest_api.rest_api_id}.execute-api.{stack.region}.{stack.url_suffix}"
            f"/{self.stage_name}{path}"
        )

    def invoke_arn(self, method: str, path: str) -> str:
        """What ``execute-api:Invoke`` names for one route (stage by name, as ``url_of``)."""
        return self.rest_api.arn_for_execute_api(method, path, self.stage_name)

    def add_routes(self, function: lambda_.IFunction, routes: Iterable[Route]) -> None:
        integration = apigw.LambdaIntegration(function, proxy=True)
        for method, path in routes:
            resource = self.rest_api.root.resource_for_path(path)
            resource.add_method(method, integration, request_validator=self.validator)
            self.routes.append((method, path))
