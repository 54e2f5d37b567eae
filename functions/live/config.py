"""The WebSocket function's environment (infra/live.py renders it with ``environment()``)."""

from __future__ import annotations

from shared.config import EnvModel


class LiveConfig(EnvModel):
    connections_table: str
    websocket_endpoint: str | None = None
