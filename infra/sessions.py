"""Sessions: one Fargate task per user and profile, with status, TTL/idle reaping and push.

A user asks for a container of a profile and gets its private address; the default profile is
a small HTTP echo backend, ``chroma`` a vector database per user.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.compute import (
    acknowledge_task_definition,
    cluster_task_arns,
    fargate_task_definition,
    grant_list_tasks,
)
from infra.events import deliver_events
from infra.nag import acknowledge_on_role, acknowledge_wildcard
from infra.network import Network
from infra.platform import Platform
from infra.routing import SessionRouting
from infra.session_storage import SessionStorage
from infra.settings import ProfileSettings, SessionsSettings
from infra.storage import add_listing_index, secure_table
from sessions.config import Profile, SessionsConfig
from sessions.repository import BY_ACTIVITY, BY_USER, WARM_POOL
from sessions.routes import router as sessions_router
from sessions.storage import PROFILE_TAG
from sessions.tasks import USER_TAG
from shared.api import routes_of

CONTAINER_NAME = "session"
RENDERED_HERE = {"task_definition", "container", "storage_path", "log_group"}
"""What a function's Profile holds that the profile's settings do not (the rest is copied)."""
STRING = dynamodb.AttributeType.STRING


class Sessions(Construct):
    """Exposes ``table``, ``task_definitions`` (profile → task definition) and the functions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        platform: Platform,
        *,
        routing: SessionRouting | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.platform = platform
        settings = platform.settings.sessions
        self.cluster = platform.cluster
        self.table = self._table()
        self.task_definitions: dict[str, ecs.FargateTaskDefinition] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        """Each profile's container output (``GET /sessions/{id}/logs`` reads it)."""
        for profile_name, profile in sorted(settings.profiles.items()):
            self.task_definitions[profile_name] = self._task_definition(
                profile_name,
                profile,
                platform.images[profile.image],
                platform.log_retention,
                platform.removal_policy,
                family=f"{platform.name}-session-{profile_name}",
            )
        self.task_security_group, self.client_security_group = self._security_groups(
            platform.network, settings, platform.settings.vpc.ingress_cidrs, routing
        )
        self.storage = self._storage(settings, platform.network)
        environment = self._environment(settings, routing)
        self.api_function, self.events_function, self.reaper_function = self._functions(environment)
        self._grant_functions(settings, routing)
        platform.api.add_routes(self.api_function, routes_of(sessions_router))
        self._event_rule()
        self._reaper_schedule(settings)

    def _table(self) -> dynamodb.Table:
        """Sessions and warm tasks: by user (lists), by activity (the reaper), warm pool."""
        table = secure_table(
            self,
            "Table",
            removal_policy=self.platform.removal_policy,
            ttl_attribute="expires_record_at",
        )
        add_listing_index(table, BY_USER, "user")
        table.add_global_secondary_index(
            index_name=BY_ACTIVITY,
            partition_key=dynamodb.Attribute(name="active", type=STRING),
            sort_key=dynamodb.Attribute(name="id", type=STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        table.add_global_secondary_index(  # sparse: the unclaimed warm tasks of a profile
            index_name=WARM_POOL,
            partition_key=dynamodb.Attribute(name="pooled", type=STRING),
            sort_key=dynamodb.Attribute(name="warm_since", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table

    def _environment(
        self, settings: SessionsSettings, routing: SessionRouting | None
    ) -> dict[str, str]:
        """What the three functions read (``SessionsConfig``), and live updates'."""
        network = self.platform.network
        profiles_json = Stack.of(self).to_json_string(
            {
                profile_name: Profile(
                    task_definition=self.task_definitions[profile_name].task_definition_arn,
                    container=CONTAINER_NAME,
                    storage_path=profile.storage.path if profile.storage else None,
                    log_group=self.log_groups[profile_name].log_group_name,
                    **profile.model_dump(include=set(Profile.model_fields) - RENDERED_HERE),
                ).model_dump()
                for profile_name, profile in sorted(settings.profiles.items())
            }
        )
        max_routes = self.platform.settings.routing.max_routes
        return {
            **SessionsConfig.environment(
                sessions_table=self.table.table_name,
                cluster_arn=self.cluster.cluster_arn,
                task_subnets=network.task_subnet_ids,
                task_security_groups=[self.task_security_group.security_group_id],
                assign_public_ip=network.assign_public_ip,
                profiles=profiles_json,
                max_sessions_per_user=self.platform.settings.limits.max_sessions_per_user,
                reaper_dry_run=settings.reaper_dry_run,
                storage_file_system=self.storage.file_system.file_system_id
                if self.storage
                else None,
                **(routing.config() | {"max_routes": max_routes} if routing else {}),
            ),
            **self.platform.live.environment(),
        }

    def _functions(
        self, environment: dict[str, str]
    ) -> tuple[lambda_.Function, lambda_.Function, lambda_.Function]:
        """The API, the task-event handler and the reaper: one environment, one table."""
        baseline = self.platform.baseline
        api = baseline.function(
            self,
            "Api",
            handler="sessions.handler.handler",
            service="sessions",
            description="Sessions API: launch, list, status, stop, heartbeat",
            environment=environment,
        )
        events_function = baseline.function(
            self,
            "TaskEvents",
            handler="sessions.on_task_event.handler",
            service="sessions-events",
            description="ECS task state changes to session status and WebSocket pushes",
            environment=environment,
            timeout=Duration.seconds(60),
        )
        reaper = baseline.function(
            self,
            "Reaper",
            handler="sessions.reaper.handler",
            service="sessions-reaper",
            description="Stops expired or idle sessions and orphan tasks",
            environment=environment,
            timeout=Duration.minutes(5),
            traced=False,  # a schedule runs it
        )
        return api, events_function, reaper

    def _grant_functions(self, settings: SessionsSettings, routing: SessionRouting | None) -> None:
        functions = (self.api_function, self.events_function, self.reaper_function)
        for function in functions:
            self.table.grant_read_write_data(function)
            acknowledge_wildcard(
                function,
                f"{self.table.table_arn}/index/*",
                "Covers only this table's own indexes (by_user, by_activity, warm_pool).",
            )
            self.platform.live.grant_publish(function)
            self._grant_task_control(function)
        self._grant_run_task(self.api_function)
        # a session's output (GET .../logs), and a failed one's last lines (task events)
        for function in (self.api_function, self.events_function):
            for _, group in sorted(self.log_groups.items()):
                group.grant(function, "logs:GetLogEvents")
        if self.storage is not None:
            self._grant_volumes(self.api_function, self.storage, self.platform.name)
        if any(profile.warm_pool for profile in settings.profiles.values()):
            self._grant_run_task(self.reaper_function)  # it refills the warm pools
        grant_list_tasks(self.reaper_function, self.cluster)
        if routing is not None:  # routes open on RUNNING, close on the way out, strays reaped
            for function in functions:
                routing.grant_routes(function)
        self._grant_activity(settings, routing)

    def _reaper_schedule(self, settings: SessionsSettings) -> None:
        events.Rule(
            self,
            "ReaperSchedule",
            description="berth sessions reaper",
            schedule=events.Schedule.rate(Duration.minutes(settings.reaper_interval_minutes)),
            targets=[targets.LambdaFunction(self.reaper_function, retry_attempts=0)],
        )

    def _grant_activity(self, settings: SessionsSettings, routing: SessionRouting | None) -> None:
        """The reaper asks whether a session is in use before it calls it idle: its route's
        request count, its container's activity lines."""
        for profile_name, group in sorted(self.log_groups.items()):
            if settings.profiles[profile_name].activity_marker:
                group.grant(self.reaper_function, "logs:FilterLogEvents")
        if routing is not None:
            routing.grant_read_requests(self.reaper_function)

    def _security_groups(
        self,
        network: Network,
        settings: SessionsSettings,
        ingress_cidrs: Sequence[str],
        routing: SessionRouting | None,
    ) -> tuple[ec2.SecurityGroup, ec2.SecurityGroup]:
        """Session containers admit their profiles' ports only from the ``SessionClients``
        group (a product's backend attaches it) and the operator's ``ingress_cidrs`` — never
        from workers, job tasks, instances or other sessions, which run users' code. With
        routing on, only from the routing load balancer."""
        tasks = network.workload_security_group(
            self,
            "TaskSecurityGroup",
            description="berth session containers: their ports, from SessionClients only"
            if routing is None
            else "berth session containers: their ports, from the routing load balancer only",
        )
        clients = network.workload_security_group(
            self,
            "ClientSecurityGroup",
            description="berth SessionClients: attach to what may reach session containers",
        )
        for port in sorted({profile.port for profile in settings.profiles.values()}):
            if routing is not None:
                tasks.add_ingress_rule(
                    routing.security_group, ec2.Port.tcp(port), f"port {port}, routed"
                )
                routing.security_group.add_egress_rule(
                    tasks, ec2.Port.tcp(port), f"to sessions on {port}"
                )
                continue
            tasks.add_ingress_rule(clients, ec2.Port.tcp(port), f"session port {port}")
            for cidr in ingress_cidrs:
                tasks.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), f"port {port}")
        CfnOutput(
            self,
            "ClientSecurityGroupId",
            key="SessionClientsSecurityGroupId",
            value=clients.security_group_id,
            description="Attach to a product's backend so it can reach session containers"
            + (" (unused while routing is on)" if routing is not None else ""),
        )
        return tasks, clients

    def _task_definition(
        self,
        profile_name: str,
        profile: ProfileSettings,
        image: ecr_assets.DockerImageAsset,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        family: str,
    ) -> ecs.FargateTaskDefinition:
        self.log_groups[profile_name] = logs.LogGroup(
            self, f"Logs-{profile_name}", retention=log_retention, removal_policy=removal_policy
        )
        task_role = iam.Role(
            self,
            f"TaskRole-{profile_name}",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"berth session profile {profile_name}: no AWS permissions"
            + (" beyond mounting its user's volume" if profile.storage else ""),
        )
        definition = fargate_task_definition(
            self,
            f"Task-{profile_name}",
            family=family,
            capability="sessions",
            cpu=profile.cpu,
            memory=profile.memory,
            task_role=task_role,
        )
        definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=ecs.ContainerImage.from_docker_image_asset(image),
            memory_limit_mib=profile.memory,
            port_mappings=[ecs.PortMapping(container_port=profile.port)],
            environment={"PORT": str(profile.port), **profile.environment},
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=profile_name, log_group=self.log_groups[profile_name]
            ),
        )
        acknowledge_task_definition(
            definition,
            "The container environment holds the profile's non-secret settings (PORT and "
            "the operator's profile.environment); per-session values come as RunTask overrides.",
        )
        return definition

    def _task_arns(self) -> str:
        return cluster_task_arns(self, self.cluster)

    def _storage(self, settings: SessionsSettings, network: Network) -> SessionStorage | None:
        """The file system of users' volumes, when a profile keeps storage; its session tasks
        may mount through an access point."""
        keeping = [n for n, p in sorted(settings.profiles.items()) if p.storage is not None]
        if not keeping:
            return None
        storage = SessionStorage(
            self,
            "Storage",
            network=network,
            session_tasks=self.task_security_group,
            ia_days=settings.storage_ia_days,
            removal_policy=RemovalPolicy.RETAIN
            if settings.storage_removal_policy == "retain"
            else RemovalPolicy.DESTROY,
        )
        for profile_name in keeping:
            storage.grant_mount(self.task_definitions[profile_name].task_role)
        self.storage_profiles = keeping
        return storage

    def _grant_volumes(
        self, function: lambda_.Function, storage: SessionStorage, name: str
    ) -> None:
        """Users' volumes (``sessions.storage``): access points on berth's file system, and
        revisions of berth's session families that mount them — started with berth's session
        roles only."""
        storage.grant_volumes(function)
        families = Stack.of(self).format_arn(
            service="ecs", resource="task-definition", resource_name=f"{name}-session-*"
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RegisterTaskDefinition"],
                resources=["*"],  # it takes no resource: the tag it must carry bounds it
                conditions={
                    "StringEquals": {f"aws:RequestTag/{PROFILE_TAG}": self.storage_profiles}
                },
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["ecs:DescribeTaskDefinition"], resources=["*"])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[families],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["ecs:DeregisterTaskDefinition"], resources=[families])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=[families],
                conditions={"StringEquals": {"ecs:CreateAction": "RegisterTaskDefinition"}},
            )
        )
        acknowledge_on_role(
            function,
            "AwsSolutions-IAM5[Resource::*]",
            "ecs:RegisterTaskDefinition and DescribeTaskDefinition take no resource; registering "
            "is bound by the profile tag it must carry and iam:PassRole to berth's session roles.",
        )
        acknowledge_wildcard(
            function,
            families,
            "Users' revisions of berth's own session families (one family per user and profile, "
            "named at run time).",
        )

    def _grant_task_control(self, function: lambda_.Function) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:DescribeTasks", "ecs:StopTask"], resources=[self._task_arns()]
            )
        )
        acknowledge_wildcard(
            function,
            self._task_arns(),
            "Session task ARNs are created at run time; the statement is scoped to tasks of "
            "berth's own cluster.",
        )

    def _grant_run_task(self, function: lambda_.IFunction) -> None:
        definitions = list(self.task_definitions.values())
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[d.task_definition_arn for d in definitions],
                conditions={"ArnEquals": {"ecs:cluster": self.cluster.cluster_arn}},
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=[self._task_arns()],
                conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
            )
        )
        function.add_to_role_policy(  # a claimed warm task gets its user's tag, nothing else
            iam.PolicyStatement(
                actions=["ecs:TagResource"],
                resources=[self._task_arns()],
                conditions={"ForAllValues:StringEquals": {"aws:TagKeys": [USER_TAG]}},
            )
        )
        roles = [d.task_role.role_arn for d in definitions]
        roles += [d.execution_role.role_arn for d in definitions if d.execution_role]
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=roles,
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )

    def _event_rule(self) -> None:
        deliver_events(
            self,
            "TaskStateChanges",
            dead_letter_id="TaskEventsDlq",
            description="berth: ECS task state changes of berth's cluster",
            source="aws.ecs",
            detail_type="ECS Task State Change",
            detail={"clusterArn": [self.cluster.cluster_arn]},
            function=self.events_function,
        )
