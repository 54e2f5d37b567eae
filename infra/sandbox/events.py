"""Builds API Gateway REST (v1) proxy events the way API Gateway does for an IAM-auth route.

Used by the sandbox's HTTP adapter and by tests, so both feed handlers the same shape.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from infra.sandbox.account import ACCOUNT


def local_user_arn(user: str) -> str:
    """The principal ARN a local ``X-Berth-User: alice`` stands for (an assumed-role session)."""
    if user.startswith("arn:"):
        return user
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/berth-client/{user}"


def match_resource(resource: str, path: str) -> dict[str, str] | None:
    """Path parameters if ``path`` matches the resource template (``/sessions/{id}``)."""
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\+\\\}", r"(?P<\1>.+)", re.escape(resource))
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", pattern)
    found = re.fullmatch(pattern, path)
    return found.groupdict() if found else None


def specificity(resource: str) -> tuple[bool, ...]:
    """Orders matching resources as API Gateway chooses among them: segment by segment, a
    fixed one before a ``{param}`` (the smallest wins)."""
    return tuple(part.startswith("{") for part in resource.strip("/").split("/"))


def rest_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    user_arn: str | None = None,
    stage: str = "v1",
) -> dict[str, Any]:
    resource = resource or path
    identity: dict[str, Any] = {"sourceIp": "127.0.0.1", "userAgent": "berth-local"}
    if user_arn:
        identity.update(
            userArn=user_arn,
            user=user_arn.rsplit("/", 1)[-1],
            caller=user_arn.rsplit("/", 1)[-1],
            accountId=ACCOUNT,
        )
    request_id = str(uuid.uuid4())
    header_map = dict(headers or {})
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": header_map,
        "multiValueHeaders": {k: [v] for k, v in header_map.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": match_resource(resource, path) or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "accountId": ACCOUNT,
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "identity": identity,
        },
        "body": body,
        "isBase64Encoded": False,
    }
