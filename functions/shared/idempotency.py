"""Idempotency keys: a client names a request so that a retry (a lost answer, a timeout)
gets back what the first attempt made instead of a second one."""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import Field

IdempotencyKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Retrying with the same key returns what the first request made instead "
        "of making another (a different request with a used key is 409).",
    ),
]


def idempotent_id(prefix: str, length: int, *scope: str) -> str:
    """The same scope (caller, key, ...) always names the same record: ``<prefix>_<hex>``."""
    digest = hashlib.sha256("\0".join(scope).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"
