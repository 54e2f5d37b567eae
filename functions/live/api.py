"""API Gateway → ``POST /live/tickets``. Thin: the service is built once per cold start."""

from __future__ import annotations

from live.routes import router
from shared.api import api_handler

app, handler = api_handler(router, services={"live": "live.wiring:service_from_env"})
