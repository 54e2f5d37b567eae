"""cdk-nag: the one way berth acknowledges a finding. Every acknowledgment carries a reason."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledges ``rule`` (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``scope``'s tree."""
    if len(reason) < 20:
        raise ValueError(f"acknowledging {rule} needs a specific reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))
