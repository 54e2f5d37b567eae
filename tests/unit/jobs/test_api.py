"""The jobs HTTP contract through the real Lambda handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import Call, api_caller
from tests.conftest import FakeLambdaContext
from tests.unit.jobs.conftest import ALICE, BOB


@pytest.fixture
def call(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch, lambda_context: FakeLambdaContext
) -> Iterator[Call]:
    with api_caller("jobs", environment, monkeypatch, lambda_context, ALICE) as caller:
        yield caller


def test_post_is_202_then_200_for_the_same_key(call: Any) -> None:
    body = {"name": "checksum", "input": {"text": "hi"}, "idempotency_key": "k-1"}
    status, job = call("POST", "/jobs", body)
    assert (status, job["status"]) == (202, "RUNNING")
    status, again = call("POST", "/jobs", body)
    assert (status, again["id"]) == (200, job["id"])
    status, fetched = call("GET", f"/jobs/{job['id']}")
    assert (status, fetched["status"], fetched["result_url"]) == (200, "RUNNING", None)
    status, listed = call("GET", "/jobs")
    assert [j["id"] for j in listed["items"]] == [job["id"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "nope", "input": {}}, "unknown_job"),
        ({"name": "checksum", "input": "text"}, "invalid_request"),
        ({"name": "checksum", "runtime": "fargate"}, "invalid_request"),
        ({"input": {}}, "invalid_request"),
        ({"name": "render", "input": {"x": "y" * 7000}}, "input_too_large"),
        ({"name": "checksum", "idempotency_key": "spaces are bad"}, "invalid_request"),
    ],
)
def test_bad_requests_are_400(call: Any, body: Any, code: str) -> None:
    status, error = call("POST", "/jobs", body)
    assert (status, error["error"]["code"]) == (400, code)


def test_other_users_jobs_and_bad_ids_are_404(call: Any) -> None:
    _, job = call("POST", "/jobs", {"name": "checksum"})
    status, error = call("GET", f"/jobs/{job['id']}", user=BOB)
    assert (status, error["error"]["code"]) == (404, "not_found")
    status, _ = call("GET", "/jobs/job_nothex")
    assert status == 404


def test_the_catalogue_lists_every_job_by_name_with_its_runtime(
    call: Any, environment: dict[str, str]
) -> None:
    status, catalogue = call("GET", "/jobs/catalogue")
    configured = json.loads(environment["BERTH_CATALOGUE"])
    assert status == 200
    assert catalogue["items"] == [
        {"name": name, "runtime": spec["runtime"]} for name, spec in sorted(configured.items())
    ]
    assert {"name": "checksum", "runtime": "lambda"} in catalogue["items"]
