"""API Gateway → the credentials route. Thin: the vendor is built once per cold start."""

from __future__ import annotations

from shared.api import api_handler
from workers.credential_routes import router

app, handler = api_handler(router, services={"vendor": "workers.vending:vendor_from_env"})
