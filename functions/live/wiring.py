"""Builds the tickets service from the environment, once per cold start."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from live.config import LiveConfig
from shared.config import ConfigurationError
from shared.live import Tickets


@dataclass(frozen=True)
class LiveService:
    tickets: Tickets
    websocket_url: str
    seconds: int


def build_service(config: LiveConfig, *, session: Any = None) -> LiveService:
    if not config.websocket_url:
        raise ConfigurationError("the tickets API needs BERTH_WEBSOCKET_URL")
    if session is None:
        import boto3  # on first use: a cold start that needs no AWS pays nothing

        session = boto3.session.Session()
    table = session.resource("dynamodb").Table(config.connections_table)
    return LiveService(Tickets(table, time.time), config.websocket_url, config.ticket_seconds)


@cache
def service_from_env() -> LiveService:
    return build_service(LiveConfig.from_env())
