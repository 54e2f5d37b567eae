"""Lambda baseline: the one way berth makes a function.

Every function: the current Python runtime on arm64, code from ``functions/`` as a plain
directory asset (no Docker bundling), the public Powertools v3 layer by ARN, its own log
group with retention, X-Ray tracing (except on schedules: an idle stack's every-minute runs
would be most of its traces and cost), Powertools settings in the environment, and a role
whose only built-in permissions are writing to its own log group (and X-Ray when traced).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cfn import depend_only_on_policy
from infra.nag import acknowledge
from infra.settings import ROOT, FunctionSettings

FUNCTIONS_DIR = ROOT / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
POWERTOOLS_ACCOUNT = "017000801446"
METRICS_NAMESPACE = "berth"
AWS_RETRIES = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "5"}
"""How berth's own code retries AWS (every function and berth's containers): botocore's
standard mode — throttles and 5xx retried with exponential backoff and full jitter, up to 5
attempts — set once here, never per call."""


def powertools_layer_arn(version: int) -> str:
    """The public Powertools for AWS Lambda (Python) v3 layer for our runtime/arch, per region."""
    runtime = RUNTIME.name.replace(".", "")  # python3.14 -> python314
    return (
        f"arn:{Aws.PARTITION}:lambda:{Aws.REGION}:{POWERTOOLS_ACCOUNT}:layer:"
        f"AWSLambdaPowertoolsPythonV3-{runtime}-arm64:{version}"
    )


RECORD_GRACE_MARGIN_SECONDS = 30


class LambdaBaseline(Construct):
    """Holds what every function shares (code asset, layer, settings) and makes functions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: FunctionSettings,
        log_level: str,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        self.log_level = log_level
        self.log_retention = log_retention
        self.removal_policy = removal_policy
        self.code = lambda_.Code.from_asset(
            str(FUNCTIONS_DIR), exclude=["**/__pycache__", "**/*.pyc", "**/.mypy_cache"]
        )
        self.powertools = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", powertools_layer_arn(settings.powertools_layer_version)
        )

    @property
    def record_grace_seconds(self) -> int:
        """How long after an API call began its record may still land: its function's
        timeout and a margin. Where the API acts first and records second (a command's
        message, an instance's workflow), what finds no record waits this long, then knows
        the call answered 503 and nothing is to be done."""
        return self.settings.timeout_seconds + RECORD_GRACE_MARGIN_SECONDS

    def function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        service: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        timeout: Duration | None = None,
        memory_mb: int | None = None,
        traced: bool = True,
    ) -> lambda_.Function:
        """A Python function in ``scope`` running ``handler`` (``package.module.function``)
        from ``functions/`` with the Powertools layer. ``traced=False`` for functions a
        schedule runs: no X-Ray (nor its permissions)."""
        return self._make(
            scope,
            construct_id,
            service=service,
            description=description,
            environment=environment,
            timeout=timeout,
            memory_mb=memory_mb,
            runtime=RUNTIME,
            code=self.code,
            handler=handler,
            layers=[self.powertools],
            traced=traced,
        )

    def image_function(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        service: str,
        description: str,
        environment: Mapping[str, str] | None = None,
        timeout: Duration | None = None,
        memory_mb: int | None = None,
    ) -> lambda_.Function:
        """A container-image function (``Code.from_asset_image``): it brings its own
        dependencies, so no layer."""
        return self._make(
            scope,
            construct_id,
            service=service,
            description=description,
            environment=environment,
            timeout=timeout,
            memory_mb=memory_mb,
            runtime=lambda_.Runtime.FROM_IMAGE,
            code=code,
            handler=lambda_.Handler.FROM_IMAGE,
            layers=None,
            traced=True,
        )

    def _logs_and_role(
        self, scope: Construct, construct_id: str, service: str, description: str
    ) -> tuple[logs.LogGroup, iam.Role]:
        """The function's own log group, and a role that may write to it and nothing else."""
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=self.log_retention,
            removal_policy=self.removal_policy,
        )
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"berth {service}: {description}"[:1000],
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        return log_group, role

    def _make(
        self,
        scope: Construct,
        construct_id: str,
        *,
        service: str,
        description: str,
        environment: Mapping[str, str] | None,
        timeout: Duration | None,
        memory_mb: int | None,
        runtime: lambda_.Runtime,
        code: lambda_.Code,
        handler: str,
        layers: list[lambda_.ILayerVersion] | None,
        traced: bool,
    ) -> lambda_.Function:
        log_group, role = self._logs_and_role(scope, construct_id, service, description)
        function = lambda_.Function(
            scope,
            construct_id,
            description=description,
            runtime=runtime,
            architecture=ARCHITECTURE,
            code=code,
            handler=handler,
            layers=layers,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE if traced else lambda_.Tracing.DISABLED,
            timeout=timeout or Duration.seconds(self.settings.timeout_seconds),
            memory_size=memory_mb or self.settings.memory_mb,
            environment={
                "POWERTOOLS_SERVICE_NAME": service,
                "POWERTOOLS_LOG_LEVEL": self.log_level,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                **AWS_RETRIES,
                **(environment or {}),
            },
        )
        depend_only_on_policy(function, role)
        if traced:
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions; "
                "AWS requires Resource '*' for active tracing.",
            )
        return function
