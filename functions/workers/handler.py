"""API Gateway → workers routes. Thin: the service is built once per cold start."""

from __future__ import annotations

from shared.api import api_handler
from workers.routes import router

app, handler = api_handler(
    router,
    services={
        "workers": "workers.wiring:service_from_env",
        "files": "workers.wiring:files_from_env",
    },
)
