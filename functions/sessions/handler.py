"""API Gateway → sessions routes. Thin: the service is built once per cold start."""

from __future__ import annotations

from sessions.routes import router
from shared.api import api_handler

app, handler = api_handler(router, services={"sessions": "sessions.wiring:service_from_env"})
