"""API Gateway → instances routes. Thin: the service is built once per cold start."""

from __future__ import annotations

from instances.routes import router
from shared.api import api_handler

app, handler = api_handler(router, services={"instances": "instances.wiring:service_from_env"})
