"""Workers: queue-fed Fargate workers that run terminal commands in a project's workspace
(seed 004), scaled 0..N by a Lambda, streaming output over the WebSocket API.

No orchestrator on a server, no Redis, no NAT: the queue is SQS, the scaler is a scheduled
Lambda woken by every queued command, output goes through API Gateway's management API.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.api import BerthApi
from infra.compute import acknowledge_task_definition, cluster_task_arns, fargate_task_definition
from infra.functions import METRICS_NAMESPACE, LambdaBaseline
from infra.live import LiveUpdates
from infra.nag import acknowledge, acknowledge_wildcard
from infra.network import Network
from infra.settings import ROOT, WorkersSettings
from infra.storage import grant_objects, secure_bucket, secure_table
from live.config import LiveConfig
from workers.config import ScalerConfig, WorkerConfig, WorkersConfig

CONTAINER_NAME = "worker"
ROUTES = [
    ("POST", "/workspaces/{project}/commands"),
    ("GET", "/workspaces/{project}/commands/{command_id}"),
]
# The worker image is built from the repository root; only these paths go into its context.
WORKER_CONTEXT = [
    "containers/worker/**",
    "functions/shared/**",
    "functions/live/**",
    "functions/workers/**",
]


class WorkerFleet(Construct):
    """Exposes ``queue``, ``dead_letters``, ``bucket``, ``table``, ``task_definition``,
    ``scaler`` and ``dashboard``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: WorkersSettings,
        max_tasks: int,
        network: Network,
        cluster: ecs.ICluster,
        live: LiveUpdates,
        access_logs: s3.IBucket,
        baseline: LambdaBaseline,
        api: BerthApi,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = cluster

        # --- storage and queue ----------------------------------------------------------------
        self.bucket = secure_bucket(
            self,
            "Workspaces",
            removal_policy=removal_policy,
            access_logs=access_logs,
            log_prefix="workspaces/",
        )
        self.table = secure_table(self, "Table", removal_policy=removal_policy)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the command queue's dead-letter queue.",
        )
        self.queue = sqs.Queue(
            self,
            "Commands",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # longer than the longest command plus sync and upload time
            visibility_timeout=Duration.seconds(settings.command_timeout_seconds + 300),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=settings.max_receive_count, queue=self.dead_letters
            ),
        )
        self.dlq_alarm = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_description="berth: commands failed repeatedly and reached the DLQ",
            metric=self.dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1)
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        # --- the worker -----------------------------------------------------------------------
        self.task_definition = self._task_definition(
            settings, live, log_retention, removal_policy, f"{name}-worker"
        )

        # --- the scaler -----------------------------------------------------------------------
        subnets = network.task_subnet_ids
        self.scaler = baseline.function(
            self,
            "Scaler",
            handler="workers.scaler.handler",
            service="workers-scaler",
            description="Sizes the worker fleet to the command backlog",
            environment=ScalerConfig.environment(
                queue_url=self.queue.queue_url,
                cluster_arn=cluster.cluster_arn,
                worker_task_definition=self.task_definition.task_definition_arn,
                worker_family=self.task_definition.family,
                task_subnets=",".join(subnets),
                task_security_groups=network.task_security_group.security_group_id,
                assign_public_ip=network.assign_public_ip,
                messages_per_task=settings.messages_per_task,
                min_tasks=settings.min_tasks,
                max_tasks=max_tasks,
                expected_command_seconds=settings.expected_command_seconds,
                start_delay_seconds=settings.start_delay_seconds,
            ),
            timeout=Duration.seconds(60),
        )
        # Two concurrent scalers could both launch for the same backlog.
        scaler_function = self.scaler.node.default_child
        assert isinstance(scaler_function, lambda_.CfnFunction)
        scaler_function.reserved_concurrent_executions = 1
        self.queue.grant(self.scaler, "sqs:GetQueueAttributes")
        self._grant_scaling(self.scaler)
        events.Rule(
            self,
            "ScalerSchedule",
            description="berth workers scaler",
            schedule=events.Schedule.rate(Duration.minutes(settings.scaler_interval_minutes)),
            targets=[targets.LambdaFunction(self.scaler, retry_attempts=0)],
        )

        # --- the API and the WebSocket --------------------------------------------------------
        self.api_function = baseline.function(
            self,
            "Api",
            handler="workers.handler.handler",
            service="workers",
            description="Workspace commands API: queue a command, read its status",
            environment=WorkersConfig.environment(
                workers_table=self.table.table_name,
                queue_url=self.queue.queue_url,
                workspaces_bucket=self.bucket.bucket_name,
                command_max_chars=settings.command_max_chars,
                scaler_function=self.scaler.function_name,
            ),
        )
        self.table.grant_read_write_data(self.api_function)
        self.queue.grant_send_messages(self.api_function)
        self.scaler.grant_invoke(self.api_function)
        acknowledge_wildcard(
            self.api_function,
            f"{self.scaler.function_arn}:*",
            "CDK's invoke grant covers the scaler's versions; the API calls only the scaler.",
        )
        api.add_routes(self.api_function, ROUTES)
        # subscribe (WebSocket) checks project ownership in this table
        self.table.grant_read_data(live.function)
        for key, value in LiveConfig.environment(workers_table=self.table.table_name).items():
            live.function.add_environment(key, value)

        self.dashboard = self._dashboard(name)
        CfnOutput(self, "QueueUrl", key="WorkersQueueUrl", value=self.queue.queue_url)
        CfnOutput(
            self, "WorkspacesBucketName", key="WorkspacesBucketName", value=self.bucket.bucket_name
        )

    def _task_definition(
        self,
        settings: WorkersSettings,
        live: LiveUpdates,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        family: str,
    ) -> ecs.FargateTaskDefinition:
        definition = fargate_task_definition(
            self, "WorkerTask", family=family, cpu=settings.cpu, memory=settings.memory
        )
        definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=ecs.ContainerImage.from_asset(
                str(ROOT),
                file="containers/worker/Dockerfile",
                platform=ecr_assets.Platform.LINUX_ARM64,
                ignore_mode=IgnoreMode.DOCKER,
                exclude=["**", *[f"!{path}" for path in WORKER_CONTEXT], "**/__pycache__"],
            ),
            memory_limit_mib=settings.memory,
            stop_timeout=Duration.seconds(120),
            environment={
                **WorkerConfig.environment(
                    queue_url=self.queue.queue_url,
                    workers_table=self.table.table_name,
                    workspaces_bucket=self.bucket.bucket_name,
                    connections_table=live.table.table_name,
                    websocket_endpoint=live.callback_url,
                    idle_seconds=settings.idle_seconds,
                    command_timeout_seconds=settings.command_timeout_seconds,
                    stop_grace_seconds=100,
                    metrics_namespace=METRICS_NAMESPACE,
                )
            },
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="worker",
                log_group=logs.LogGroup(
                    self, "WorkerLogs", retention=log_retention, removal_policy=removal_policy
                ),
            ),
        )
        role = definition.task_role
        self.queue.grant_consume_messages(role)
        self.table.grant_read_write_data(role)
        live.table.grant_read_write_data(role)
        stage = live.stage
        stage.grant_management_api_access(role)
        for prefix, actions in (
            ("workspaces/", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
            ("logs/", ["s3:PutObject"]),
        ):
            acknowledge_wildcard(
                role,
                grant_objects(self.bucket, role, prefix, actions),
                "Workspace files and logs are named at run time; one prefix of one bucket.",
            )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["workspaces/*"]}},
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                resources=[self._task_arns()],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )
        acknowledge_wildcard(
            role,
            self._task_arns(),
            "A worker protects its own task, whose id is made at run time; berth's cluster only.",
        )
        acknowledge_wildcard(
            role,
            Stack.of(self).format_arn(
                service="execute-api",
                resource=live.api.api_id,
                resource_name=f"{stage.stage_name}/*/@connections/*",
            ),
            "Connection ids are made by API Gateway at run time; scoped to this API's stage.",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; limited to the berth "
            "namespace by condition.",
        )
        acknowledge_task_definition(
            definition, "The environment holds resource names and limits, not secrets."
        )
        return definition

    def _task_arns(self) -> str:
        return cluster_task_arns(self, self.cluster)

    def _grant_scaling(self, function: lambda_.Function) -> None:
        definition = self.task_definition
        statements = [
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[definition.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            ),
            iam.PolicyStatement(
                actions=["ecs:ListTasks"],
                resources=["*"],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            ),
            iam.PolicyStatement(actions=["ecs:DescribeTasks"], resources=[self._task_arns()]),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[
                    definition.task_role.role_arn,
                    *([definition.execution_role.role_arn] if definition.execution_role else []),
                ],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            ),
        ]
        for statement in statements:
            function.add_to_role_policy(statement)
        acknowledge_wildcard(
            function,
            self._task_arns(),
            "Worker task ids are made at run time; scoped to berth's cluster.",
        )
        if function.role is not None:
            acknowledge(
                function.role,
                "AwsSolutions-IAM5[Resource::*]",
                "ecs:ListTasks takes no task resource (limited to berth's cluster by "
                "condition); X-Ray has no resource-level permissions.",
            )

    def _dashboard(self, name: str) -> cloudwatch.Dashboard:
        def berth_metric(metric: str, statistic: str = "Maximum") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=metric,
                dimensions_map={"service": "workers-scaler"},
                statistic=statistic,
                period=Duration.minutes(1),
            )

        queue = self.queue
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{name}-workers")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue: visible and in flight",
                left=[
                    queue.metric_approximate_number_of_messages_visible(),
                    queue.metric_approximate_number_of_messages_not_visible(),
                ],
            ),
            cloudwatch.GraphWidget(
                title="Queue: age of oldest message (s)",
                left=[queue.metric_approximate_age_of_oldest_message()],
            ),
            cloudwatch.GraphWidget(
                title="Workers: running, starting, launched",
                left=[
                    berth_metric("RunningWorkers"),
                    berth_metric("StartingWorkers"),
                    berth_metric("LaunchedWorkers", "Sum"),
                ],
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Command duration (s)",
                left=[
                    cloudwatch.Metric(
                        namespace=METRICS_NAMESPACE,
                        metric_name="CommandDuration",
                        dimensions_map={"service": "workers"},
                        statistic=stat,
                        period=Duration.minutes(5),
                    )
                    for stat in ("p50", "p95", "Maximum")
                ],
            ),
            cloudwatch.GraphWidget(
                title="Failed commands",
                left=[
                    cloudwatch.Metric(
                        namespace=METRICS_NAMESPACE,
                        metric_name="CommandFailures",
                        dimensions_map={"service": "workers"},
                        statistic="Sum",
                        period=Duration.minutes(5),
                    )
                ],
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queue depth",
                left=[self.dead_letters.metric_approximate_number_of_messages_visible()],
            ),
        )
        return dashboard
