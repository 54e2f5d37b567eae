"""GET /health: answers without touching any other AWS service."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from shared.api import API_VERSION, documented

router = Router()


class Health(BaseModel):
    status: Literal["ok"]
    version: str


@router.get(
    "/health",
    summary="Liveness of the API",
    responses=documented({200: ("The API answers", Health)}),
    tags=["health"],
)
def health() -> Health:
    return Health(status="ok", version=API_VERSION)
