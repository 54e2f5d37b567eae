"""The shared API behaviour every route inherits: error shape, identity, limits, OpenAPI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pydantic import BaseModel

from infra.sandbox.events import local_user_arn, rest_event
from shared.errors import Unavailable
from tests.conftest import FakeLambdaContext

ALICE = local_user_arn("alice")


class Echo(BaseModel):
    name: str


def call(
    handler: Any, ctx: FakeLambdaContext, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    response = handler(rest_event(method, path, **kwargs), ctx)
    return response["statusCode"], json.loads(response["body"])


def test_health_answers_ok(lambda_context: FakeLambdaContext) -> None:
    from health.handler import handler
    from shared.api import API_VERSION

    status, body = call(handler, lambda_context, "GET", "/health", user_arn=ALICE)
    assert status == 200
    assert body == {"status": "ok", "version": API_VERSION}


def test_unknown_route_is_404_in_berth_error_shape(lambda_context: FakeLambdaContext) -> None:
    from openapi.handler import handler

    status, body = call(handler, lambda_context, "GET", "/nope", user_arn=ALICE)
    assert status == 404
    assert body == {"error": {"code": "not_found", "message": "no route GET /nope"}}


def test_oversized_body_is_413_not_a_crash(lambda_context: FakeLambdaContext) -> None:
    from openapi.handler import handler

    status, body = call(
        handler, lambda_context, "GET", "/openapi.json", user_arn=ALICE, body="x" * (64 * 1024 + 1)
    )
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


def test_openapi_document_lists_routes_and_is_served(lambda_context: FakeLambdaContext) -> None:
    from openapi.handler import handler

    status, body = call(handler, lambda_context, "GET", "/openapi.json", user_arn=ALICE)
    assert status == 200
    assert body["openapi"].startswith("3.")
    assert "get" in body["paths"]["/health"]
    assert "/openapi.json" not in body["paths"]


def test_caller_identity_comes_only_from_request_context() -> None:
    import pytest

    from shared.api import Unauthenticated, caller_id

    event = rest_event("GET", "/health", user_arn=ALICE, headers={"X-Berth-User": "mallory"})
    assert caller_id(event) == ALICE
    anonymous = rest_event("GET", "/health", headers={"X-Berth-User": "mallory"})
    with pytest.raises(Unauthenticated):
        caller_id(anonymous)


def test_a_json_body_is_read_as_json_whatever_the_content_type(
    lambda_context: FakeLambdaContext,
) -> None:
    """``curl -d '{...}'`` sends form encoding; the API still reads the body as JSON."""
    from shared.api import make_resolver

    app = make_resolver()

    @app.post("/echo")
    def echo(body: Echo) -> Echo:
        return body

    event = rest_event(
        "POST",
        "/echo",
        body='{"name": "alice"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        user_arn=ALICE,
    )
    response = app.resolve(event, lambda_context)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"name": "alice"}


def test_routes_are_read_from_the_routers_decorators() -> None:
    """API Gateway's routes are derived from the routers; if Powertools changes how it keeps
    them, this fails rather than the gateway quietly losing routes."""
    from shared.api import routes_of
    from workers.routes import router

    assert sorted(routes_of(router)) == [
        ("DELETE", "/workspaces/{project}/commands/{command_id}"),
        ("GET", "/workspaces/{project}/commands"),
        ("GET", "/workspaces/{project}/commands/{command_id}"),
        ("GET", "/workspaces/{project}/commands/{command_id}/output"),
        ("GET", "/workspaces/{project}/files"),
        ("POST", "/workspaces/{project}/commands"),
        ("POST", "/workspaces/{project}/files/download"),
        ("POST", "/workspaces/{project}/files/upload"),
        ("POST", "/workspaces/{project}/terminals/{terminal}/connect"),
    ]


def test_a_handler_reads_its_services_though_another_resolver_includes_its_router(
    lambda_context: FakeLambdaContext,
) -> None:
    """The OpenAPI function includes every router; a router's context follows the resolver
    that included it last. A handler must still find its own services (in one process, the
    order the handlers were imported in must not matter)."""
    from aws_lambda_powertools.event_handler.router import APIGatewayRouter

    from shared.api import api_handler

    router = APIGatewayRouter()

    @router.get("/mine")
    def mine() -> dict[str, str]:
        return {"service": router.context["thing"]}

    _, handler = api_handler(router, services={"thing": "tests.unit.test_api_basics:_thing"})
    api_handler(router)  # e.g. the OpenAPI function, imported afterwards
    response = handler(rest_event("GET", "/mine", user_arn=ALICE), lambda_context)
    assert response["statusCode"] == 200, response["body"]
    assert json.loads(response["body"]) == {"service": "built"}


def _thing() -> str:
    return "built"


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (ClientError({"Error": {"Code": "ThrottlingException"}, "ResponseMetadata":
                      {"HTTPStatusCode": 400}}, "PutItem"), 503, "unavailable"),
        (ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query"),
         503, "unavailable"),
        (ClientError({"Error": {"Code": "InternalError"}, "ResponseMetadata":
                      {"HTTPStatusCode": 500}}, "PutObject"), 503, "unavailable"),
        (EndpointConnectionError(endpoint_url="https://sqs"), 503, "unavailable"),
        (Unavailable("the queue refused it"), 503, "unavailable"),
        (ClientError({"Error": {"Code": "ValidationException"}, "ResponseMetadata":
                      {"HTTPStatusCode": 400}}, "PutItem"), 500, "internal_error"),
        (ValueError("a bug"), 500, "internal_error"),
    ],
)  # fmt: skip
def test_aws_busy_after_retries_is_a_503_with_retry_after_and_a_bug_is_a_500(
    lambda_context: FakeLambdaContext, raised: Exception, status: int, code: str
) -> None:
    from aws_lambda_powertools.event_handler.router import APIGatewayRouter

    from shared.api import api_handler

    router = APIGatewayRouter()

    @router.get("/fails")
    def fails() -> None:
        raise raised

    _, handler = api_handler(router)
    response = handler(rest_event("GET", "/fails", user_arn=ALICE), lambda_context)
    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]["code"] == code
    headers = response.get("multiValueHeaders") or {}
    retry_after = (headers.get("Retry-After") or [None])[0] or (response.get("headers") or {}).get(
        "Retry-After"
    )
    assert retry_after == ("1" if status == 503 else None)
    assert "Traceback" not in response["body"] and "Throttling" not in response["body"]
