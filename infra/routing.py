"""Session routing (``routing.mode: alb``): a user's browser reaches their own session.

An internet-facing Application Load Balancer in the public subnets: HTTPS with the operator's
wildcard certificate (``*.<routing.domain>``) and a current TLS policy, HTTP redirected to
HTTPS, access logs to the access-log bucket, and a default action that answers 404 in berth's
error shape. The sessions functions add, per RUNNING session, an IP target group and two
listener rules (host ``<session id>.<domain>`` AND its token in a ``berth-session`` cookie,
or in an ``X-Berth-Session-Token`` header) and remove them when it ends. With ``none`` (the
default) none of this exists.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge, acknowledge_on_role, acknowledge_wildcard
from infra.network import Network
from infra.settings import RoutingSettings

ROUTING_TAG = "berth:routing"
NOT_FOUND = json.dumps({"error": {"code": "not_found", "message": "no such session route"}})


class SessionRouting(Construct):
    """Exposes ``security_group`` (what session tasks admit), ``listener`` and ``domain``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: RoutingSettings,
        network: Network,
        access_logs: s3.IBucket,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        if settings.certificate_arn is None or settings.domain is None:
            raise ValueError("routing.mode 'alb' needs routing.certificate_arn and domain")
        self.domain = settings.domain
        self.name = name
        self.vpc_id = network.vpc.vpc_id
        self.security_group = self._security_group(network)
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=network.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=self.security_group,
            drop_invalid_header_fields=True,
        )
        self.load_balancer.log_access_logs(access_logs, prefix="routing")
        self.listener = self._listener(settings.certificate_arn)
        self.load_balancer.add_redirect(source_port=80, target_port=443)
        if settings.hosted_zone_id:
            self._wildcard_record(settings.hosted_zone_id, settings.domain)
        self._outputs(settings.domain)

    def _security_group(self, network: Network) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="berth session routing: HTTPS (and HTTP to redirect) from the internet",
            allow_all_outbound=False,
        )
        for port in (443, 80):
            group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(port))
        acknowledge(
            group,
            "AwsSolutions-EC23",
            "The routing load balancer is internet-facing by design (users' browsers); it "
            "forwards only requests with a session's host and token.",
        )
        return group

    def _listener(self, certificate_arn: str) -> elbv2.ApplicationListener:
        """HTTPS with the operator's certificate; anything not routed to a session: 404."""
        certificate = acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
        return self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[certificate],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            default_action=elbv2.ListenerAction.fixed_response(
                404, content_type="application/json", message_body=NOT_FOUND
            ),
            open=False,
        )

    def _wildcard_record(self, hosted_zone_id: str, domain: str) -> None:
        """``*.<domain>`` → the load balancer, in the operator's hosted zone."""
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=hosted_zone_id, zone_name=domain
        )
        route53.ARecord(
            self,
            "Wildcard",
            zone=zone,
            record_name=f"*.{domain}",
            target=route53.RecordTarget.from_alias(
                route53_targets.LoadBalancerTarget(self.load_balancer)
            ),
        )

    def _outputs(self, domain: str) -> None:
        CfnOutput(
            self,
            "SessionDomain",
            key="SessionDomain",
            value=domain,
            description="Sessions are reached at https://<session id>.<this domain>",
        )
        CfnOutput(
            self,
            "RoutingLoadBalancerDns",
            key="RoutingLoadBalancerDns",
            value=self.load_balancer.load_balancer_dns_name,
            description="Point *.<domain> here (done for you with routing.hosted_zone_id)",
        )

    def config(self) -> dict[str, str]:
        """The sessions functions' routing settings (``SessionsConfig.routing_*``)."""
        return {
            "routing_listener_arn": self.listener.listener_arn,
            "routing_vpc_id": self.vpc_id,
            "routing_domain": self.domain,
            "routing_tag": self.name,
        }

    def grant_routes(self, function: lambda_.Function) -> None:
        """Add and remove session routes: rules of this listener only; target groups only when
        tagged as berth's (``berth:routing = <prefix>``), tagged on creation."""
        stack = Stack.of(self)
        target_groups = stack.format_arn(
            service="elasticloadbalancing", resource="targetgroup", resource_name="*"
        )
        rules = stack.format_arn(
            service="elasticloadbalancing", resource="listener-rule", resource_name="app/*"
        )
        for statement in self._route_statements(target_groups, rules):
            function.add_to_role_policy(statement)
        acknowledge_wildcard(
            function,
            target_groups,
            "Session target groups are created at run time; creating needs berth's routing tag "
            "and every other action needs the tag on the group.",
        )
        acknowledge_wildcard(
            function,
            rules,
            "Session rules are created at run time: created only on berth's routing listener "
            "with berth's tag; changed or deleted only when they carry it.",
        )
        acknowledge_on_role(
            function,
            "AwsSolutions-IAM5[Resource::*]",
            "elasticloadbalancing:Describe* take no resource (and, where traced, X-Ray has no "
            "resource-level permissions).",
        )

    def _route_statements(self, target_groups: str, rules: str) -> list[iam.PolicyStatement]:
        """Creating needs berth's tag on the request; changing needs it on the resource."""
        tagged = {f"aws:RequestTag/{ROUTING_TAG}": self.name}
        owned = {"StringEquals": {f"aws:ResourceTag/{ROUTING_TAG}": self.name}}
        return [
            iam.PolicyStatement(  # rules on this listener only, tagged as berth's
                actions=["elasticloadbalancing:CreateRule"],
                resources=[self.listener.listener_arn],
                conditions={"StringEquals": tagged},
            ),
            iam.PolicyStatement(
                actions=["elasticloadbalancing:CreateTargetGroup"],
                resources=[target_groups],
                conditions={"StringEquals": tagged},
            ),
            iam.PolicyStatement(
                actions=["elasticloadbalancing:AddTags"],
                resources=[target_groups, rules],
                conditions={
                    "StringEquals": tagged,
                    "ForAnyValue:StringEquals": {
                        "elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateRule"]
                    },
                },
            ),
            iam.PolicyStatement(
                actions=["elasticloadbalancing:DeleteRule", "elasticloadbalancing:ModifyRule"],
                resources=[rules],
                conditions=owned,
            ),
            iam.PolicyStatement(
                actions=[
                    "elasticloadbalancing:RegisterTargets",
                    "elasticloadbalancing:DeregisterTargets",
                    "elasticloadbalancing:DeleteTargetGroup",
                ],
                resources=[target_groups],
                conditions=owned,
            ),
            iam.PolicyStatement(  # Describe* take no resource
                actions=[
                    "elasticloadbalancing:DescribeRules",
                    "elasticloadbalancing:DescribeTargetGroups",
                    "elasticloadbalancing:DescribeTags",
                ],
                resources=["*"],
            ),
        ]

    def grant_read_requests(self, function: lambda_.Function) -> None:
        """Read how many requests each session's target group had (the reaper: routed traffic
        is use). CloudWatch's metric reads take no resource."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
        )
        acknowledge_on_role(
            function,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:GetMetricStatistics takes no resource (and, where traced, X-Ray has no "
            "resource-level permissions).",
        )
