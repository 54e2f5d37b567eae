"""Calling a capability's real API handler the way API Gateway does, with a moto environment."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from infra.sandbox.events import rest_event

Call = Callable[..., tuple[int, Any]]


@contextmanager
def api_caller(
    capability: str,
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
    default_user: str,
) -> Iterator[Call]:
    """``call(method, path, body=None, user=..., raw=None, query=None) -> (status, json)``;
    the handler's cold start reads ``environment``."""
    module = importlib.import_module(f"{capability}.handler")
    wiring = importlib.import_module(f"{capability}.wiring")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    forget_built(wiring)

    def call(
        method: str,
        path: str,
        body: Any = None,
        user: str | None = default_user,
        raw: str | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        event = rest_event(method, path, body=payload, user_arn=user, query=query)
        response = module.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    try:
        yield call
    finally:
        forget_built(wiring)


def forget_built(wiring: Any) -> None:
    """Every builder a wiring module caches (the service, and e.g. the workers' files): each
    test's cold start builds them again from its own environment and emulator."""
    for value in vars(wiring).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
