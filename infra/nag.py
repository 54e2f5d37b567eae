"""cdk-nag: the one way berth acknowledges a finding. Every acknowledgment carries a reason."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledges ``rule`` (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``scope``'s tree."""
    if len(reason) < 20:
        raise ValueError(f"acknowledging {rule} needs a specific reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledge_on_role(function: lambda_.IFunction, rule: str, reason: str) -> None:
    """Findings about a function's permissions live on its role's policy, not the function."""
    if function.role is None:
        raise ValueError("function has no role")
    acknowledge(function.role, rule, reason)


def ref(construct: IConstruct, attribute: str | None = None) -> str:
    """How cdk-nag writes a reference to ``construct`` in a finding: ``<LogicalId[.Attr]>``."""
    child = construct.node.default_child
    if not isinstance(child, cdk.CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    stack = cdk.Stack.of(construct)
    logical_id = str(stack.resolve(stack.get_logical_id(child)))
    return f"<{logical_id}.{attribute}>" if attribute else f"<{logical_id}>"
