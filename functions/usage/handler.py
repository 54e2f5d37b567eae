"""API Gateway → usage routes. Thin: the service is built once per cold start."""

from __future__ import annotations

from shared.api import api_handler
from usage.routes import router

app, handler = api_handler(router, services={"usage": "usage.wiring:service_from_env"})
