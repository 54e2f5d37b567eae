"""The routers whose routes make up berth's HTTP API, in the order the document lists them.

A capability adds its router here; tests compare these routes with API Gateway's methods.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from health.routes import router as health_router
from instances.routes import router as instances_router
from jobs.routes import router as jobs_router
from live.routes import router as live_router
from sessions.routes import router as sessions_router
from usage.routes import router as usage_router
from workers.credential_routes import router as worker_credentials_router
from workers.routes import router as workers_router

ROUTERS: tuple[Router, ...] = (
    health_router,
    sessions_router,
    jobs_router,
    instances_router,
    workers_router,
    worker_credentials_router,
    usage_router,
    live_router,
)
