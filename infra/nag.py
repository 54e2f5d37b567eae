"""cdk-nag: the one way berth acknowledges a finding. Every acknowledgment carries a reason."""

from __future__ import annotations

import re
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
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


def acknowledge_wildcard(
    target: lambda_.Function | iam.IRole | iam.ManagedPolicy, resource: str, reason: str
) -> None:
    """Acknowledges IAM5 for one wildcard ``resource`` (an ARN, tokens allowed) granted to a
    function's role, a role or a managed policy, written the way cdk-nag writes it."""
    rendered = as_nag_text(cdk.Stack.of(target).resolve(resource))
    rule = f"AwsSolutions-IAM5[Resource::{rendered}]"
    if isinstance(target, lambda_.Function):
        acknowledge_on_role(target, rule, reason)
    else:
        acknowledge(target, rule, reason)


def as_nag_text(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it: ``<Ref>``, ``<Id.Attr>``, and
    policy variables ``${aws:PrincipalTag/x}`` as ``<aws:PrincipalTag/x>``."""
    if isinstance(value, str):
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", value)  # ${aws:PrincipalTag/x} → <aws:…>
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(as_nag_text(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    raise TypeError(f"cannot render {value!r} as cdk-nag text")
