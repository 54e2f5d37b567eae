"""The EventBridge-driven handlers, called as Lambda calls them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.sandbox.events import rest_event
from sessions.config import SessionsConfig
from tests.conftest import FakeLambdaContext
from tests.unit.sessions.conftest import ALICE, tasks_in_cluster


@pytest.fixture
def deployed(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from sessions.wiring import service_from_env

    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    service_from_env.cache_clear()
    yield
    service_from_env.cache_clear()


def eventbridge(detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "1",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": "2026-11-26T00:00:00Z",
        "region": "us-east-1",
        "resources": [detail.get("taskArn", "")],
        "detail": detail,
    }


def test_task_event_handler_moves_the_session_to_running(
    deployed: None,
    lambda_context: FakeLambdaContext,
    aws: boto3.session.Session,
    config: SessionsConfig,
) -> None:
    from sessions import handler as api
    from sessions import on_task_event

    created = api.handler(
        rest_event("POST", "/sessions", body="{}", user_arn=ALICE), lambda_context
    )
    assert created["statusCode"] == 201
    (task,) = tasks_in_cluster(aws, config)
    result = on_task_event.handler(eventbridge(task), lambda_context)
    assert result["status"] == "RUNNING"


def test_task_event_handler_ignores_other_events(
    deployed: None, lambda_context: FakeLambdaContext
) -> None:
    from sessions import on_task_event

    assert on_task_event.handler(eventbridge({}), lambda_context) == {"session": None}


def test_reaper_handler_reports_its_decisions(
    deployed: None, lambda_context: FakeLambdaContext
) -> None:
    from sessions import reaper

    result = reaper.handler({"detail-type": "Scheduled Event"}, lambda_context)
    assert result == {"dry_run": False, "decisions": []}
