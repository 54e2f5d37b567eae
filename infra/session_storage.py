"""Session storage: one encrypted EFS file system holding every user's volumes.

Each (user, profile) gets an access point of its own at run time (``sessions.storage``); this
construct builds what they share: the file system (encrypted at rest, TLS in transit and IAM
authorization required by its policy, cold files to Infrequent Access after
``sessions.storage_ia_days``, kept on stack delete unless ``sessions.storage_removal_policy``
says destroy), its mount targets in the task subnets behind a security group that admits NFS
from session tasks only, and the grants: session tasks mount and write through an access point
only; the sessions API makes and deletes access points and registers users' revisions of the
profiles' task definitions.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.nag import acknowledge_wildcard
from infra.network import Network
from sessions.storage import FILE_SYSTEM_TAG

NFS = ec2.Port.tcp(2049)
CLIENT_ACTIONS = [
    "elasticfilesystem:ClientMount",
    "elasticfilesystem:ClientWrite",
    "elasticfilesystem:ClientRootAccess",
]

IA_POLICIES = {
    1: efs.LifecyclePolicy.AFTER_1_DAY,
    7: efs.LifecyclePolicy.AFTER_7_DAYS,
    14: efs.LifecyclePolicy.AFTER_14_DAYS,
    30: efs.LifecyclePolicy.AFTER_30_DAYS,
    60: efs.LifecyclePolicy.AFTER_60_DAYS,
    90: efs.LifecyclePolicy.AFTER_90_DAYS,
    180: efs.LifecyclePolicy.AFTER_180_DAYS,
    270: efs.LifecyclePolicy.AFTER_270_DAYS,
    365: efs.LifecyclePolicy.AFTER_365_DAYS,
}
"""The days EFS lifecycle management accepts (``sessions.storage_ia_days``)."""


def file_system_policy() -> iam.PolicyDocument:
    """Denies only: root access, mounts without TLS, mounts not through an access point."""
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="NoRootAccess",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["elasticfilesystem:ClientRootAccess"],
            ),
            iam.PolicyStatement(
                sid="TlsOnly",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=CLIENT_ACTIONS,
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            ),
            iam.PolicyStatement(
                sid="ThroughAnAccessPointOnly",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                conditions={"Null": {"elasticfilesystem:AccessPointArn": "true"}},
            ),
        ]
    )


class SessionStorage(Construct):
    """Exposes ``file_system`` and ``security_group``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: Network,
        session_tasks: ec2.ISecurityGroup,
        ia_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = network.workload_security_group(
            self, "SecurityGroup", description="berth session storage: NFS from session tasks only"
        )
        self.security_group.add_ingress_rule(session_tasks, NFS, "NFS from session tasks")
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=network.vpc,
            vpc_subnets=network.vpc_subnets(),
            security_group=self.security_group,
            encrypted=True,
            lifecycle_policy=IA_POLICIES[ia_days],
            out_of_infrequent_access_policy=efs.OutOfInfrequentAccessPolicy.AFTER_1_ACCESS,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            enable_automatic_backups=False,
            removal_policy=removal_policy,
            # Nothing is allowed by this policy (so CDK must not add its "any IAM principal
            # through a mount target may write" statement): only the session task roles'
            # own grants open it, and only as the denies below permit.
            allow_anonymous_access=True,
            file_system_policy=file_system_policy(),
        )

    @property
    def file_system_arn(self) -> str:
        """Its ARN, built from its id (one form on AWS and in the local emulator alike)."""
        return Stack.of(self).format_arn(
            service="elasticfilesystem",
            resource="file-system",
            resource_name=self.file_system.file_system_id,
        )

    @property
    def access_points(self) -> str:
        """The ARN pattern of the file system's access points."""
        return Stack.of(self).format_arn(
            service="elasticfilesystem", resource="access-point", resource_name="*"
        )

    def grant_mount(self, role: iam.IRole) -> None:
        """A session task mounts and writes through an access point of this file system (the
        one its task definition names; ECS mounts it, the container cannot)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                resources=[self.file_system_arn],
                conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
            )
        )

    def grant_volumes(self, function: lambda_.Function) -> None:
        """The sessions API makes and deletes access points on this file system only, always
        tagged with it."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["elasticfilesystem:CreateAccessPoint"],
                resources=[self.file_system_arn],
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["elasticfilesystem:TagResource"],
                resources=[self.access_points],
                conditions={
                    "StringEquals": {"elasticfilesystem:CreateAction": "CreateAccessPoint"}
                },
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["elasticfilesystem:DeleteAccessPoint"],
                resources=[self.access_points],
                conditions={
                    "StringEquals": {
                        f"aws:ResourceTag/{FILE_SYSTEM_TAG}": self.file_system.file_system_id
                    }
                },
            )
        )
        acknowledge_wildcard(
            function,
            self.access_points,
            "Access points are made per user at run time; deleting one needs the tag naming "
            "this file system, tagging one only as it is made.",
        )
