"""Network: the VPC berth runs tasks in (created, or found by lookup) and the tasks' security group.

No script finds subnets at deploy time; either
CDK creates a small VPC (no NAT gateway) or ``Vpc.from_lookup`` finds the operator's VPC, with
the lookup result committed in ``cdk.context.json`` so synth stays offline.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.settings import VpcSettings


class Network(Construct):
    """Exposes ``vpc``, ``task_subnet_type``, ``assign_public_ip`` and ``task_subnet_ids``.

    There is no shared security group: each kind of workload gets its own from
    ``workload_security_group`` (no inbound at all), and opens only what it serves.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: VpcSettings,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc: ec2.IVpc
        if settings.mode == "lookup":
            self.vpc = ec2.Vpc.from_lookup(
                self, "Vpc", vpc_id=settings.vpc_id, tags=settings.tags or None
            )
        else:
            self.vpc = self._create_vpc(settings, log_retention, removal_policy)

        public = settings.task_subnets == "public"
        self.assign_public_ip = public
        self.task_subnet_type = ec2.SubnetType.PUBLIC if public else ec2.SubnetType.PRIVATE_ISOLATED

    def workload_security_group(
        self, scope: Construct, construct_id: str, *, description: str
    ) -> ec2.SecurityGroup:
        """A security group for one kind of workload: no inbound, outbound to anywhere (image
        pulls, AWS APIs, the internet for what users run)."""
        return ec2.SecurityGroup(
            scope,
            construct_id,
            vpc=self.vpc,
            description=description,
            allow_all_outbound=True,
        )

    def vpc_subnets(self) -> ec2.SubnetSelection:
        """The subnets tasks run in."""
        return ec2.SubnetSelection(subnet_type=self.task_subnet_type)

    @property
    def task_subnet_ids(self) -> list[str]:
        """The ids of the subnets tasks run in (for functions that call RunTask)."""
        return list(self.vpc.select_subnets(subnet_type=self.task_subnet_type).subnet_ids)

    def _create_vpc(
        self,
        settings: VpcSettings,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.cidr),
            max_azs=settings.max_azs,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=22
                ),
                ec2.SubnetConfiguration(
                    name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
            restrict_default_security_group=False,
        )
        flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=log_retention, removal_policy=removal_policy
        )
        vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        if settings.interface_endpoints:
            for name, service in (
                ("EcrApi", ec2.InterfaceVpcEndpointAwsService.ECR),
                ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
                ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
                ("Ecs", ec2.InterfaceVpcEndpointAwsService.ECS),
                ("EcsAgent", ec2.InterfaceVpcEndpointAwsService.ECS_AGENT),
                ("EcsTelemetry", ec2.InterfaceVpcEndpointAwsService.ECS_TELEMETRY),
            ):
                vpc.add_interface_endpoint(
                    name,
                    service=service,
                    subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                )
        return vpc
