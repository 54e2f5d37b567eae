"""Small fixes to what CDK renders, so the template passes cfn-lint without warnings."""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct


def depend_only_on_policy(resource: IConstruct, role: iam.IRole) -> None:
    """CDK makes ``resource`` DependsOn its role, which the role's GetAtt already implies
    (cfn-lint W3005); keep only the dependency on the role's default policy."""
    policy = role.node.find_child("DefaultPolicy").node.default_child
    cfn_resource = resource.node.default_child
    if not (isinstance(policy, CfnResource) and isinstance(cfn_resource, CfnResource)):
        raise TypeError("expected L1 resources under the role policy and the resource")
    cfn_resource.add_override("DependsOn", [Stack.of(resource).get_logical_id(policy)])
