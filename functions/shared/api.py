"""What every berth HTTP handler shares: the resolver, the error shape, the caller's identity.

All errors leave as ``{"error": {"code": "<machine_code>", "message": "<human text>"}}`` with a
4xx status for caller mistakes. Unexpected exceptions are logged with their stack trace and
answered with a plain 500 that reveals nothing.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

from shared import errors

logger = Logger()

MAX_BODY_BYTES = 64 * 1024
API_TITLE = "berth"
API_VERSION = "1.0.0"


class ApiError(Exception):
    """An HTTP-level error (identity, framing). Logic raises ``shared.errors`` instead."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Unauthenticated(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "unauthenticated", "the request carries no caller identity")


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable; docs/api.md lists every code.")
    message: str = Field(description="For people; may change.")


class ErrorBody(BaseModel):
    """Every error berth answers, from its functions or its gateway."""

    error: ErrorDetail


def documented(
    success: Mapping[int, tuple[str, type[BaseModel]]], errors: Mapping[int, str] | None = None
) -> dict[int, OpenAPIResponse]:
    """A route's ``responses`` for the OpenAPI document: each success status with the model
    it answers, and the route's own error statuses with the error shape. (The statuses every
    route can answer — 400, 401, 403, 413, 429, 500 — are added to every operation by the
    document itself.)"""
    responses: dict[int, OpenAPIResponse] = {
        status: {"description": text, "content": {"application/json": {"model": model}}}
        for status, (text, model) in success.items()
    }
    for status, text in (errors or {}).items():
        responses[status] = {
            "description": text,
            "content": {"application/json": {"model": ErrorBody}},
        }
    return responses


# The one place a domain error becomes an HTTP status.
DOMAIN_STATUS: dict[type[errors.DomainError], int] = {
    errors.Invalid: 400,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.LimitReached: 429,
    errors.Unavailable: 503,
}


def status_of(error: errors.DomainError) -> int:
    for kind in type(error).__mro__:
        if kind in DOMAIN_STATUS:
            return DOMAIN_STATUS[kind]
    return 500


RETRY_AFTER_SECONDS = 1
"""What a 503 tells the caller to wait before trying again (``Retry-After``)."""


def error_response(status: int, code: str, message: str) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {"code": code, "message": message}},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None,
    )


def caller_id(event: Any) -> str:
    """The caller's identity from the API Gateway request context, never from the body.

    The API takes IAM auth only: this is the SigV4 principal's ARN (a product acting for its
    end users assumes its client role with ``RoleSessionName`` = the end user's id).
    """
    context = event.get("requestContext") or {}
    identity = context.get("identity") or {}
    user = identity.get("userArn")
    if not user:
        raise Unauthenticated()
    return str(user)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        kind = error.get("type", "")
        if kind == "json_invalid":
            return "the request body is not valid JSON"
        message = "unknown field" if kind == "extra_forbidden" else error.get("msg", "invalid")
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


class BerthResolver(APIGatewayRestResolver):
    """berth's API speaks JSON only: a body is parsed as JSON whatever Content-Type says (so
    ``curl -d`` works), and oversized bodies are refused before anything parses them."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        body = event.get("body") or ""
        if body:
            event = _as_json(event)
        raw = body.encode() if isinstance(body, str) else body
        if len(raw) > MAX_BODY_BYTES:
            return _error(
                413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes"
            )
        if raw:
            problem = json_problem(raw)
            if problem:
                return _error(400, "invalid_request", problem)
        return super().resolve(event, context)


MAX_JSON_DEPTH = 32
MAX_INTEGER_DIGITS = 18


def json_problem(raw: bytes) -> str | None:
    """Why a request body is not JSON berth takes (None if it is): not UTF-8, not JSON, not an
    object, nested deeper than ``MAX_JSON_DEPTH``, an integer longer than
    ``MAX_INTEGER_DIGITS``, or NaN/Infinity. Checked before any parser recurses or builds huge
    numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "the request body is not UTF-8"
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return f"the request body is nested deeper than {MAX_JSON_DEPTH} levels"
        elif char in "]}":
            depth -= 1

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
            raise ValueError(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
        return int(digits)

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        parsed = json.loads(text, parse_int=integer, parse_constant=constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError too
        if isinstance(exc, json.JSONDecodeError):
            return "the request body is not valid JSON"
        return str(exc)
    if not isinstance(parsed, dict):
        # every berth body is an object (Powertools would take a list's first item instead)
        return "the request body must be a JSON object"
    return None


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    """A Lambda proxy response in berth's error shape, for refusals before routing."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "multiValueHeaders": {},
        "isBase64Encoded": False,
        "body": json.dumps({"error": {"code": code, "message": message}}),
    }


def _as_json(event: Mapping[str, Any]) -> dict[str, Any]:
    headers = {
        key: value
        for key, value in (event.get("headers") or {}).items()
        if key.lower() != "content-type"
    }
    multi = {
        key: value
        for key, value in (event.get("multiValueHeaders") or {}).items()
        if key.lower() != "content-type"
    }
    headers["Content-Type"] = content_types.APPLICATION_JSON
    multi["Content-Type"] = [content_types.APPLICATION_JSON]
    return {**event, "headers": headers, "multiValueHeaders": multi}


def make_resolver(*routers: Router) -> BerthResolver:
    """One resolver with validation, berth's error shape and every given router."""
    app = BerthResolver(enable_validation=True)
    for router in routers:
        app.include_router(router)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[Any]:
        return error_response(400, "invalid_request", _describe_validation(exc))

    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError) -> Response[Any]:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(errors.DomainError)
    def _domain_error(exc: errors.DomainError) -> Response[Any]:
        return error_response(status_of(exc), exc.code, exc.message)

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response[Any]:
        event = app.current_event
        return error_response(404, "not_found", f"no route {event.http_method} {event.path}")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[Any]:
        if errors.aws_unavailable(exc):
            logger.warning("AWS unavailable after retries", exc_info=exc)
            return error_response(
                503, "unavailable", "a dependency is busy or failing; retry after a moment"
            )
        logger.exception("unhandled error")
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "internal error; it was logged"
        )

    return app


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def routes_of(router: Router) -> list[tuple[str, str]]:
    """``(METHOD, /path/{param})`` of each route a router declares: what API Gateway must
    send to the function, derived from the one place routes are written (the decorators).

    The one adapter over Powertools' route table, which it keeps private (no public API lists
    a Router's routes); ``test_routes_are_read_from_the_routers_decorators`` fails if its
    shape changes, and the structure test keeps every other module off it."""
    routes = []
    for key in router._routes:  # Powertools keeps (rule, methods, ...) per route
        rule, methods = key[0], key[1]
        path = re.sub(r"<(\w+)>", r"{\1}", rule)
        routes += [(method.upper(), path) for method in methods]
    return routes


def built(path: str) -> Any:
    """What the builder at ``"module:function"`` returns."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)()


def api_handler(
    *routers: Router, services: Mapping[str, str] | None = None
) -> tuple[BerthResolver, Handler]:
    """The one way a berth API function is made: a resolver over ``routers`` and a Lambda
    handler with Powertools logging (correlation id). (Lambda traces it; API Gateway counts
    its requests, latency and errors.)

    ``services`` name the objects routes read from ``router.context`` and the builder of
    each, as ``"module:function"``: imported and called on the first request, not at import
    (the service, its AWS clients and boto3 are most of a cold start); builders cache."""
    from aws_lambda_powertools.logging import correlation_paths

    app = make_resolver(*routers)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        for router in routers:
            # a router's context is its last including resolver's (the OpenAPI function
            # includes every router): point it back at this one's before the request
            router.context = app.context
        if services:
            app.append_context(**{name: built(path) for name, path in services.items()})  # type: ignore[no-untyped-call]
        return app.resolve(event, context)

    return app, handler
