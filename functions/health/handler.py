"""API Gateway → GET /health. Answers from memory, off the validating resolver: nothing to
import but the standard library (API Gateway has already checked the caller's signature)."""

from __future__ import annotations

import json
from typing import Any

VERSION = "1.0.0"  # shared.api.API_VERSION (a test keeps them equal)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "ok", "version": VERSION}
    status = 200
    if event.get("httpMethod", "GET") != "GET":
        status, body = 405, {"error": {"code": "method_not_allowed", "message": "GET /health"}}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "isBase64Encoded": False,
        "body": json.dumps(body),
    }
