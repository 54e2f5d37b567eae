"""API Gateway → GET /health."""

from __future__ import annotations

from health.routes import router
from shared.api import api_handler

app, handler = api_handler(router)
