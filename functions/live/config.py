"""The live functions' environment (infra/live.py renders it with ``environment()``)."""

from __future__ import annotations

from pydantic import Field

from shared.config import EnvModel


class LiveConfig(EnvModel):
    connections_table: str
    websocket_endpoint: str | None = None
    """The management API (``https://…/<stage>``): where functions post to connections."""
    websocket_url: str | None = None
    """What clients open (``wss://…/<stage>``), with a ticket."""
    ticket_seconds: int = Field(default=30, ge=1)
    """How long a ticket of ``POST /live/tickets`` opens a connection."""
