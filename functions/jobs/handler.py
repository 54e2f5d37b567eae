"""API Gateway → jobs routes. Thin: the service is built once per cold start."""

from __future__ import annotations

from jobs.routes import router
from shared.api import api_handler

app, handler = api_handler(router, services={"jobs": "jobs.wiring:service_from_env"})
