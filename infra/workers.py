"""Workers: queue-fed Fargate workers that run terminal commands in a project's workspace,
scaled 0..N by a Lambda, streaming output over the WebSocket API.

No orchestrator on a server, no Redis, no NAT: each user's commands wait in a FIFO queue of
their own, made by the API on the user's first command (one message group per project: a
project's commands run one at a time, in order); a worker task serves one user for its whole
life (bound by the scaler, ``workers.reserve``) and reads only that queue; a worker holds
each command under a lease it keeps alive, a scheduled reconciler ends what a vanished worker
or the dead-letter queue left behind, and output goes through API Gateway's management API.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
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
from infra.compute import (
    acknowledge_task_definition,
    cluster_task_arns,
    fargate_task_definition,
    grant_list_tasks,
)
from infra.events import deliver_events
from infra.functions import AWS_RETRIES, METRICS_NAMESPACE, LambdaBaseline
from infra.live import LiveUpdates
from infra.nag import acknowledge, acknowledge_wildcard
from infra.network import Network
from infra.platform import Platform
from infra.settings import ROOT, STOP_GRACE_SECONDS, WorkersSettings
from infra.storage import add_listing_index, grant_objects, secure_bucket, secure_table
from shared.api import routes_of
from shared.config import env_name
from workers.config import (
    ReconcilerConfig,
    ScalerConfig,
    VendingConfig,
    WorkerConfig,
    WorkersConfig,
)
from workers.credential_routes import router as credentials_router
from workers.fleet import STARTED_BY
from workers.models import terminal_scope
from workers.repository import ACTIVE, BY_PROJECT
from workers.reserve import BIND_PREFIX, FLEET_KEY
from workers.routes import router as workers_router

CONTAINER_NAME = "worker"
RUN_AS_UID = 10002
"""The image's unprivileged ``berth-run`` user (containers/worker/Dockerfile): the first of
``RUN_AS_UIDS`` uids, a fresh one per command."""
RUN_AS_UIDS = 1000
WORKDIR = "/workspaces"
# The worker image is built from the repository root; only these paths go into its context.
WORKER_CONTEXT = [
    "containers/worker/**",
    "functions/shared/**",
    "functions/live/**",
    "functions/workers/**",
]
PROJECT_TAG = "${aws:PrincipalTag/project}"
TENANT_TAG = "${aws:PrincipalTag/tenant}"
CREDENTIALS_PATH = "/workers/credentials"
COMMAND_TAG = "${aws:PrincipalTag/command}"
USER_TAG = "${aws:PrincipalTag/user}"


def berth_metric(
    metric: str,
    statistic: str = "Maximum",
    service: str = "workers-scaler",
    period: Duration | None = None,
) -> cloudwatch.Metric:
    """One of the metrics berth's workers functions publish (Powertools, per service)."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=metric,
        dimensions_map={"service": service},
        statistic=statistic,
        period=period or Duration.minutes(1),
    )


class WorkerFleet(Construct):
    """Exposes ``user_queues`` (the ARN pattern of every user's queue), ``dead_letters``,
    ``bucket``, ``table``, ``tenant_role``, ``credentials`` (the route's function),
    ``task_definition``, ``security_group``, ``scaler``, ``reconciler`` and
    ``dashboard``."""

    def __init__(self, scope: Construct, construct_id: str, platform: Platform) -> None:
        super().__init__(scope, construct_id)
        self.platform = platform
        settings, limits = platform.settings.workers, platform.settings.limits
        baseline, live, name = platform.baseline, platform.live, platform.name
        self.cluster = platform.cluster
        self.bucket = self._workspaces(settings)
        self.table = self._table(platform.removal_policy)
        self.queue_prefix = f"{name}-u-"
        self.user_queues = Stack.of(self).format_arn(
            service="sqs", resource=f"{self.queue_prefix}*"
        )
        self.dead_letters = self._dead_letters(name)
        self.security_group = platform.network.workload_security_group(
            self, "SecurityGroup", description="berth workers: no inbound"
        )
        self.api = platform.api
        self.task_definition = self._task_definition(
            settings,
            live,
            platform.log_retention,
            platform.removal_policy,
            f"{name}-worker",
            record_grace_seconds=baseline.record_grace_seconds,
        )
        self.credentials = self._credentials(baseline, platform.api)
        self.tenant_role = self._tenant_role(live)
        self.credentials.add_environment(env_name("tenant_role_arn"), self.tenant_role.role_arn)
        self.scaler = self._scaler(
            settings,
            baseline,
            platform.network,
            limits.max_worker_tasks,
            limits.max_workers_per_user,
        )
        self.stopped_function = self._stopped_workers(baseline)
        self.reconciler = self._reconciler(settings, baseline, live)
        self.api_function = self._api(
            settings, baseline, platform.api, live, limits.max_queued_commands_per_user
        )
        self.dashboard = self._dashboard(name)
        CfnOutput(
            self, "WorkspacesBucketName", key="WorkspacesBucketName", value=self.bucket.bucket_name
        )

    def _workspaces(self, settings: WorkersSettings) -> s3.Bucket:
        """Projects' files, command logs (expired), old versions (expired)."""
        return secure_bucket(
            self,
            "Workspaces",
            removal_policy=self.platform.removal_policy,
            access_logs=self.platform.storage.access_logs_bucket,
            log_prefix="workspaces/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    prefix="logs/",
                    expiration=Duration.days(settings.log_expiry_days),
                ),
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(
                        self.platform.settings.storage.noncurrent_version_expiry_days
                    ),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
        )

    # --- records and queues -------------------------------------------------------------------

    def _table(self, removal_policy: RemovalPolicy) -> dynamodb.Table:
        table = secure_table(
            self, "Table", removal_policy=removal_policy, ttl_attribute="expires_record_at"
        )
        add_listing_index(table, BY_PROJECT, "project")
        # sparse: QUEUED/RUNNING commands, and ended ones while their project is kept warm
        add_listing_index(table, ACTIVE, ACTIVE)
        return table

    def _dead_letters(self, name: str) -> sqs.Queue:
        # FIFO queue names must end in .fifo; named here (CloudFormation only adds the suffix
        # to names it makes up, emulators do not).
        dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=f"{name}-commands-dlq.fifo",
            fifo=True,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the users' command queues' dead-letter queue.",
        )
        self.dlq_alarm = cloudwatch.Alarm(
            self,
            "DeadLettersAlarm",
            alarm_description="berth: command messages could not be delivered (DLQ)",
            metric=dead_letters.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5)
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return dead_letters

    # --- the worker ---------------------------------------------------------------------------

    def _task_definition(
        self,
        settings: WorkersSettings,
        live: LiveUpdates,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        family: str,
        *,
        record_grace_seconds: int,
    ) -> ecs.FargateTaskDefinition:
        definition = fargate_task_definition(
            self,
            "WorkerTask",
            family=family,
            capability="workers",
            cpu=settings.cpu,
            memory=settings.memory,
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
            # an init as PID 1 reaps what commands leave behind (the worker kills it)
            linux_parameters=ecs.LinuxParameters(self, "WorkerLinux", init_process_enabled=True),
            environment=self._worker_environment(settings, live, record_grace_seconds),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="worker",
                log_group=logs.LogGroup(
                    self, "WorkerLogs", retention=log_retention, removal_policy=removal_policy
                ),
            ),
        )
        self._grant_worker(definition.task_role)
        acknowledge_task_definition(
            definition, "The environment holds resource names and limits, not secrets."
        )
        return definition

    def _worker_environment(
        self, settings: WorkersSettings, live: LiveUpdates, record_grace_seconds: int
    ) -> dict[str, str]:
        """What the worker reads (``WorkerConfig``), and botocore's retry mode."""
        return AWS_RETRIES | WorkerConfig.environment(
            user_queue_prefix=self.queue_prefix,
            workers_table=self.table.table_name,
            workspaces_bucket=self.bucket.bucket_name,
            connections_table=live.table.table_name,
            websocket_endpoint=live.callback_url,
            credentials_url=self.api.url_of(CREDENTIALS_PATH),
            idle_seconds=settings.idle_seconds,
            keep_warm_seconds=settings.keep_warm_seconds,
            command_timeout_seconds=settings.command_timeout_seconds,
            lease_seconds=settings.lease_seconds,
            stop_grace_seconds=STOP_GRACE_SECONDS,
            cancel_grace_seconds=settings.cancel_grace_seconds,
            record_grace_seconds=record_grace_seconds,
            run_as_uid=RUN_AS_UID,
            run_as_uids=RUN_AS_UIDS,
            workdir=WORKDIR,
            metrics_namespace=METRICS_NAMESPACE,
        )

    def _grant_fleet_items(
        self, grantee: iam.IGrantable, actions: list[str], keys: list[str]
    ) -> None:
        """The fleet's items (``workers.reserve``) of the workers table, nothing else."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=actions,
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": keys}},
            )
        )

    def _grant_worker(self, role: iam.IRole) -> None:
        """The task role: ask the credentials route for its user's credentials, say it is
        idle or alive (the fleet's item), read its binding and leave unbound (a put that
        never overwrites: ``workers.reserve``), protect its own task, put metrics — and
        nothing of any user's queue, files, records or terminals: those come with the
        credentials the route vends for the task's one user (``tenant_role``)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[self.api.invoke_arn("POST", CREDENTIALS_PATH)],
            )
        )
        self._grant_fleet_items(role, ["dynamodb:GetItem", "dynamodb:UpdateItem"], [FLEET_KEY])
        self._grant_fleet_items(role, ["dynamodb:GetItem", "dynamodb:PutItem"], [f"{BIND_PREFIX}*"])
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

        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; limited to the berth "
            "namespace by condition.",
        )

    def _credentials(self, baseline: LambdaBaseline, api: BerthApi) -> lambda_.Function:
        """``POST /workers/credentials``: vends the tenant role to a worker task, tagged with
        the user its binding names (``workers.vending``)."""
        function = baseline.function(
            self,
            "Credentials",
            handler="workers.credential_handler.handler",
            service="workers-credentials",
            description="Credentials for a worker task, scoped to the one user it is bound to",
            environment=VendingConfig.environment(
                workers_table=self.table.table_name,
                tenant_role_arn="",  # set once the tenant role exists (it trusts this one)
                worker_role_name=self.task_definition.task_role.role_name,
                user_queue_prefix=self.queue_prefix,
            ),
        )
        self._grant_fleet_items(function, ["dynamodb:GetItem"], [f"{BIND_PREFIX}*", "CMD#*"])
        api.add_routes(function, routes_of(credentials_router))
        return function

    def _tenant_role(self, live: LiveUpdates) -> iam.Role:
        """What a worker task may do for its one user, vended by the credentials route with
        the session tags ``user`` and ``tenant`` (that user's queue) and, for a command,
        ``project`` and ``command``: that project's files, log and terminals, that command's
        record and that user's count — nothing else."""
        vendor = self.credentials.role
        if vendor is None:
            raise TypeError("the credentials function has no role")
        role = iam.Role(
            self,
            "TenantRole",
            assumed_by=iam.SessionTagsPrincipal(iam.ArnPrincipal(vendor.role_arn)),
            description="berth workers: one user's queue; one command's project files, log, "
            "record and terminals",
            max_session_duration=Duration.hours(1),
        )
        vendor.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole", "sts:TagSession"], resources=[role.role_arn]
            )
        )
        self._grant_tenant_queue(role)
        self._grant_tenant_project(role)
        self._grant_tenant_live(role, live)
        return role

    def _grant_tenant_queue(self, role: iam.Role) -> None:
        """Its user's queue (the session's tenant tag) and nobody else's."""
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sqs:GetQueueUrl",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                ],
                resources=[
                    Stack.of(self).format_arn(
                        service="sqs", resource=f"{self.queue_prefix}{TENANT_TAG}.fifo"
                    )
                ],
            )
        )

    def _grant_tenant_project(self, role: iam.Role) -> None:
        """The command's project's files and log, its record and its user's count."""
        workspace = grant_objects(
            self.bucket,
            role,
            f"workspaces/{PROJECT_TAG}/",
            ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        )
        logs_prefix = grant_objects(self.bucket, role, f"logs/{PROJECT_TAG}/", ["s3:PutObject"])
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"workspaces/{PROJECT_TAG}/*"]}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
                conditions={
                    "ForAllValues:StringEquals": {
                        "dynamodb:LeadingKeys": [f"CMD#{COMMAND_TAG}", f"COUNT#{USER_TAG}"]
                    }
                },
            )
        )
        for resource in (workspace, logs_prefix):
            acknowledge_wildcard(
                role,
                resource,
                "One project's prefix (the session's project tag) of one bucket; file names "
                "are the user's.",
            )

    def _grant_tenant_live(self, role: iam.Role, live: LiveUpdates) -> None:
        """Who listens to the project's terminals (read only), and posting to them."""
        role.add_to_policy(
            iam.PolicyStatement(  # who listens to the project's terminals: read only
                actions=["dynamodb:Query"],
                resources=[live.table.table_arn],
                conditions={
                    "ForAllValues:StringLike": {
                        "dynamodb:LeadingKeys": [f"TOPIC#{terminal_scope(PROJECT_TAG)}:*"]
                    }
                },
            )
        )
        live.grant_post(
            role,
            "learnt only from the project's own subscriptions; scoped to this API's stage",
        )

    # --- functions ----------------------------------------------------------------------------

    def _scaler(
        self,
        settings: WorkersSettings,
        baseline: LambdaBaseline,
        network: Network,
        max_tasks: int,
        max_workers_per_user: int,
    ) -> lambda_.Function:
        self.scaler_environment = ScalerConfig.environment(
            workers_table=self.table.table_name,
            cluster_arn=self.cluster.cluster_arn,
            worker_task_definition=self.task_definition.task_definition_arn,
            worker_family=self.task_definition.family,
            task_subnets=network.task_subnet_ids,
            task_security_groups=[self.security_group.security_group_id],
            assign_public_ip=network.assign_public_ip,
            min_tasks=settings.min_tasks,
            max_tasks=max_tasks,
            max_workers_per_user=max_workers_per_user,
            reserve_minimum=settings.reserve_minimum,
            reserve_window_seconds=settings.reserve_window_seconds,
            warm_reserve_share=settings.warm_reserve_share,
            worker_cpu=settings.cpu,
            worker_memory=settings.memory,
        )
        scaler = baseline.function(
            self,
            "Scaler",
            handler="workers.scaler.handler",
            service="workers-scaler",
            description="Sizes the worker fleet to the projects with commands",
            environment=self.scaler_environment,
            timeout=Duration.seconds(60),
            traced=False,  # a schedule runs it
        )
        self._grant_fleet_items(scaler, ["dynamodb:GetItem", "dynamodb:UpdateItem"], [FLEET_KEY])
        self._grant_fleet_items(scaler, ["dynamodb:PutItem"], [f"{BIND_PREFIX}*"])
        # Two concurrent scalers could both launch for the same backlog.
        cfn_function = scaler.node.default_child
        if not isinstance(cfn_function, lambda_.CfnFunction):
            raise TypeError("the scaler has no CloudFormation function")
        cfn_function.reserved_concurrent_executions = 1
        scaler.add_to_role_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[f"{self.table.table_arn}/index/{ACTIVE}"],
            )
        )
        self._grant_scaling(scaler)
        self._schedule("ScalerSchedule", scaler, settings.scaler_interval_minutes)
        return scaler

    def _stopped_workers(self, baseline: LambdaBaseline) -> lambda_.Function:
        """Each worker task that stopped → its user's usage (``workers.metering``)."""
        function = baseline.function(
            self,
            "StoppedWorkers",
            handler="workers.on_task_stopped.handler",
            service="workers-usage",
            description="Records each stopped worker's time as the usage of the user it served",
            environment=self.scaler_environment,
        )
        self._grant_fleet_items(function, ["dynamodb:GetItem"], [f"{BIND_PREFIX}*"])
        deliver_events(
            self,
            "StoppedWorkerRule",
            dead_letter_id="StoppedWorkersDlq",
            description="berth: worker tasks that stopped (usage)",
            source="aws.ecs",
            detail_type="ECS Task State Change",
            detail={
                "clusterArn": [self.cluster.cluster_arn],
                "startedBy": [STARTED_BY],
                "lastStatus": ["STOPPED"],
            },
            function=function,
        )
        return function

    def _reconciler(
        self, settings: WorkersSettings, baseline: LambdaBaseline, live: LiveUpdates
    ) -> lambda_.Function:
        reconciler = baseline.function(
            self,
            "Reconciler",
            handler="workers.reconciler.handler",
            service="workers-reconciler",
            description="Ends commands whose worker vanished or whose message reached the DLQ",
            environment={
                **ReconcilerConfig.environment(
                    workers_table=self.table.table_name,
                    dead_letter_queue_url=self.dead_letters.queue_url,
                    reserve_window_seconds=settings.reserve_window_seconds,
                ),
                **live.environment(),
            },
            timeout=Duration.seconds(60),
            traced=False,  # a schedule runs it
        )
        self.table.grant_read_write_data(reconciler)
        acknowledge_wildcard(
            reconciler,
            f"{self.table.table_arn}/index/*",
            "CDK's table grant covers this table's own indexes (it reads the active one).",
        )
        self.dead_letters.grant_consume_messages(reconciler)
        live.grant_publish(reconciler)
        self._schedule("ReconcilerSchedule", reconciler, settings.reconcile_interval_minutes)
        return reconciler

    def _api(
        self,
        settings: WorkersSettings,
        baseline: LambdaBaseline,
        api: BerthApi,
        live: LiveUpdates,
        max_pending_per_user: int,
    ) -> lambda_.Function:
        function = baseline.function(
            self,
            "Api",
            handler="workers.handler.handler",
            service="workers",
            description="Workspace commands API: queue, list, read, cancel",
            environment={
                **WorkersConfig.environment(
                    workers_table=self.table.table_name,
                    user_queue_prefix=self.queue_prefix,
                    dead_letter_queue_arn=self.dead_letters.queue_arn,
                    lease_seconds=settings.lease_seconds,
                    max_receive_count=settings.max_receive_count,
                    workspaces_bucket=self.bucket.bucket_name,
                    command_max_chars=settings.command_max_chars,
                    max_pending_per_user=max_pending_per_user,
                    log_url_seconds=settings.log_url_seconds,
                    max_file_bytes=settings.max_file_bytes,
                    scaler_function=self.scaler.function_name,
                    connect_url_seconds=settings.connect_url_seconds,
                ),
                **live.environment(),
            },
        )
        self._grant_api(function, live)
        api.add_routes(function, routes_of(workers_router))
        return function

    def _grant_api(self, function: lambda_.Function, live: LiveUpdates) -> None:
        """Its table, users' queues (made on their first command), waking the scaler,
        presigned log and file URLs, and minting terminal grants and tickets."""
        live.grant_topics(function)  # a project's owner may hear its terminals (connect URLs)
        self.table.grant_read_write_data(function)
        acknowledge_wildcard(
            function,
            f"{self.table.table_arn}/index/*",
            "Covers only this table's own indexes (by_project, active).",
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                # a user's queue is made (idempotently) with its policy and tags on their
                # first command
                actions=[
                    "sqs:CreateQueue",
                    "sqs:GetQueueUrl",
                    "sqs:SetQueueAttributes",
                    "sqs:TagQueue",
                    "sqs:SendMessage",
                ],
                resources=[self.user_queues],
            )
        )
        acknowledge_wildcard(
            function,
            self.user_queues,
            "Users' queues are made at run time, one per user; berth's prefix only.",
        )
        self.scaler.grant_invoke(function)
        acknowledge_wildcard(
            function,
            f"{self.scaler.function_arn}:*",
            "CDK's invoke grant covers the scaler's versions; the API calls only the scaler.",
        )
        acknowledge_wildcard(
            function,
            grant_objects(self.bucket, function, "logs/", ["s3:GetObject"]),
            "Presigned log URLs: command logs are named at run time; one prefix of one bucket.",
        )
        acknowledge_wildcard(  # berth files ls|get|put: presigned URLs signed by this role
            function,
            grant_objects(self.bucket, function, "workspaces/", ["s3:GetObject", "s3:PutObject"]),
            "Presigned file URLs: a project's files are named by its user; one prefix of one "
            "bucket, and the API checks the project is the caller's before it signs.",
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": ["workspaces/*"]}},
            )
        )

    def _schedule(self, construct_id: str, function: lambda_.Function, minutes: int) -> None:
        events.Rule(
            self,
            construct_id,
            description=f"berth {function.node.id.lower()}",
            schedule=events.Schedule.rate(Duration.minutes(minutes)),
            targets=[targets.LambdaFunction(function, retry_attempts=0)],
        )

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
            iam.PolicyStatement(actions=["ecs:DescribeTasks"], resources=[self._task_arns()]),
            # berth:capability at RunTask, berth:user when a worker is bound (for the bill)
            iam.PolicyStatement(actions=["ecs:TagResource"], resources=[self._task_arns()]),
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
        grant_list_tasks(function, self.cluster)

    def _dashboard(self, name: str) -> cloudwatch.Dashboard:
        """The fleet against the work, commands' durations and failures, and what was lost."""
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{name}-workers")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Workers: running, starting, launched, bound; projects with commands",
                left=[
                    berth_metric("RunningWorkers"),
                    berth_metric("StartingWorkers"),
                    berth_metric("LaunchedWorkers", "Sum"),
                    berth_metric("BoundWorkers"),
                    berth_metric("BoundFromReserve", "Sum"),
                    berth_metric("ActiveProjects"),
                    berth_metric("PendingCommands"),
                ],
            ),
        )
        five_minutes = Duration.minutes(5)
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Command duration (s)",
                left=[
                    berth_metric("CommandDuration", stat, "workers", five_minutes)
                    for stat in ("p50", "p95", "Maximum")
                ],
            ),
            cloudwatch.GraphWidget(
                title="Failed commands",
                left=[berth_metric("CommandFailures", "Sum", "workers", five_minutes)],
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queue depth; commands ended lost or undeliverable",
                left=[
                    self.dead_letters.metric_approximate_number_of_messages_visible(),
                    berth_metric("LostCommands", "Sum", "workers-reconciler"),
                    berth_metric("UndeliverableCommands", "Sum", "workers-reconciler"),
                ],
            ),
        )
        return dashboard
