"""``POST /live/tickets``: a ticket that opens the caller's own WebSocket connection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler.api_gateway import Router

from shared.api import caller_id, documented
from shared.live import Ticket, TicketOut, ticket_url

if TYPE_CHECKING:
    from live.wiring import LiveService

router = Router()


@router.post(
    "/live/tickets",
    summary="A single-use URL that opens the caller's WebSocket connection",
    description=(
        "The connection hears the caller's topic (session status) and may subscribe to "
        "topics granted to them (their terminals). Open it within the lifetime, once."
    ),
    responses=documented({200: ("Open the url with a WebSocket client", TicketOut)}),
    tags=["live"],
)
def create_ticket() -> TicketOut:
    live: LiveService = router.context["live"]
    user = caller_id(router.current_event.raw_event)
    return ticket_url(live.tickets, Ticket(user), live.websocket_url, live.seconds)
