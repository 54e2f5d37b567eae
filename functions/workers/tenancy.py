"""Who a worker serves: a tenant is berth's user (the caller's identity); each has a FIFO
queue of their own, named from a digest of the user (IAM and SQS names allow neither the
length nor the characters of an ARN)."""

from __future__ import annotations

import hashlib

TENANT_CHARS = 24


def tenant_of(user: str) -> str:
    """A short, stable, name-safe id for ``user``."""
    return hashlib.sha256(user.encode()).hexdigest()[:TENANT_CHARS]


def queue_name(prefix: str, user: str) -> str:
    return f"{prefix}{tenant_of(user)}.fifo"
