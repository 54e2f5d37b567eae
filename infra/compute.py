"""Compute core: the ECS cluster every Fargate task runs in, and the container images.

Images are ``DockerImageAsset``s built from ``containers/<dir>``: synth only copies the
directory into cdk.out (no Docker daemon needed); ``cdk deploy`` builds and pushes them.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Stack, Tags
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.nag import acknowledge, acknowledge_on_role
from infra.network import Network
from infra.settings import CONTAINERS_DIR


class ComputeCore(Construct):
    """Exposes ``cluster`` and ``images`` (container dir name → image asset)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        image_dirs: Iterable[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=network.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )
        self.images: dict[str, ecr_assets.DockerImageAsset] = {
            name: ecr_assets.DockerImageAsset(
                self,
                f"Image-{name}",
                directory=str(CONTAINERS_DIR / name),
                platform=ecr_assets.Platform.LINUX_ARM64,
                exclude=["**/__pycache__", "**/*.pyc"],
            )
            for name in sorted(set(image_dirs))
        }


CAPABILITY_TAG = "berth:capability"
"""Which capability a task, machine or definition serves (sessions, workers, jobs, instances)."""


def fargate_task_definition(
    scope: Construct,
    construct_id: str,
    *,
    family: str,
    cpu: int,
    memory: int,
    capability: str,
    task_role: iam.IRole | None = None,
) -> ecs.FargateTaskDefinition:
    """The one way berth makes a task definition: Fargate on ARM64 Linux, tagged with the
    capability it serves (``berth:capability``; every RunTask propagates the definition's
    tags to the task, so the bill can split by it)."""
    definition = ecs.FargateTaskDefinition(
        scope,
        construct_id,
        family=family,
        cpu=cpu,
        memory_limit_mib=memory,
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.ARM64,
            operating_system_family=ecs.OperatingSystemFamily.LINUX,
        ),
        task_role=task_role,
    )
    Tags.of(definition).add(CAPABILITY_TAG, capability)
    return definition


def acknowledge_task_definition(definition: ecs.TaskDefinition, environment: str) -> None:
    """After its containers are added: why their environment is plain, and the execution
    role's one unavoidable wildcard."""
    acknowledge(definition, "AwsSolutions-ECS2", environment)
    if definition.execution_role is not None:
        acknowledge(
            definition.execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; pulls are scoped "
            "to the CDK asset repository.",
        )


def cluster_task_arns(scope: Construct, cluster: ecs.ICluster) -> str:
    """Every task of ``cluster`` (task ids are made at run time)."""
    return Stack.of(scope).format_arn(
        service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
    )


def grant_list_tasks(function: lambda_.IFunction, cluster: ecs.ICluster) -> None:
    """``ecs:ListTasks`` on ``cluster`` only: the action takes no resource, so the grant is
    ``*`` limited by an ``ecs:cluster`` condition."""
    function.add_to_role_policy(
        iam.PolicyStatement(
            actions=["ecs:ListTasks"],
            resources=["*"],
            conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
        )
    )
    acknowledge_on_role(
        function,
        "AwsSolutions-IAM5[Resource::*]",
        "ecs:ListTasks takes no resource; the grant is limited to berth's cluster by the "
        "ecs:cluster condition (and, where traced, X-Ray has no resource-level permissions).",
    )
