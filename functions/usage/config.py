"""The usage API's environment (infra/usage.py renders it with ``environment()``)."""

from __future__ import annotations

import re

from pydantic import Field

from shared.config import EnvModel, Ids


class UsageApiConfig(EnvModel):
    admins: Ids = Field(default_factory=list)
    """Principals that may call ``/admin/...``: IAM role or user ARNs, or a caller's full ARN
    (``*`` matches any run of characters). Empty: nobody."""


def principal_of(caller: str) -> str:
    """The IAM principal of an assumed-role session ARN (``arn:aws:sts::A:assumed-role/R/S``
    → ``arn:aws:iam::A:role/R``: what ``aws:PrincipalArn`` holds); other ARNs as they are."""
    found = re.fullmatch(r"arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.+", caller)
    return f"arn:{found[1]}:iam::{found[2]}:role/{found[3]}" if found else caller
