"""The client's models against the API's OpenAPI document (the one source of truth): the
same fields, the same required ones, for every model the client reads. A field added to an
answer and not to the client, or one renamed, fails here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from berth_client.models import MODELS, Answer
from infra.sandbox.events import local_user_arn, rest_event
from tests.conftest import FakeLambdaContext


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    from openapi.handler import handler

    event = rest_event("GET", "/openapi.json", user_arn=local_user_arn("alice"))
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    return dict(json.loads(response["body"])["components"]["schemas"])


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_each_client_model_has_the_apis_fields_and_required_fields(
    model: type[Answer], schemas: dict[str, Any]
) -> None:
    assert model.__name__ in schemas, f"the API has no {model.__name__}"
    schema = schemas[model.__name__]
    assert set(model.model_fields) == set(schema["properties"])
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required == set(schema.get("required", []))


def test_every_answer_the_client_reads_has_a_model() -> None:
    """The list the test above walks is the client's whole vocabulary."""
    import berth_client.models as module

    defined = {
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Answer) and value is not Answer
    }
    assert defined == set(MODELS)
