"""``POST /workers/credentials``: a worker task asks for credentials scoped to its user (and
to one of their commands). Thin: the caller's identity from the request context, the vendor
decides (``workers.vending``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, ConfigDict, Field

from shared.api import caller_id, documented
from workers.models import COMMAND_ID_PATTERN

if TYPE_CHECKING:
    from workers.vending import CredentialVendor

router = Router()


class CredentialsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    command_id: str | None = Field(
        default=None,
        pattern=COMMAND_ID_PATTERN,
        description="A command of the task's user: adds its project's and its own access.",
    )


class Credentials(BaseModel):
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: str


class Vended(BaseModel):
    user: str = Field(description="The one user this worker task serves.")
    queue_name: str = Field(description="That user's command queue.")
    credentials: Credentials


@router.post(
    "/workers/credentials",
    summary="Credentials for a worker task, scoped to its user (berth's worker tasks only)",
    responses=documented(
        {200: ("Credentials of the task's tenant role, tagged with its user", Vended)},
        {
            404: "not_found: the caller is no worker task, or the command is not its user's",
            409: "not_bound: the task has no user (yet, or it left)",
        },
    ),
    tags=["workers"],
)
def vend(body: CredentialsRequest) -> Vended:
    vendor: CredentialVendor = router.context["vendor"]
    vended = vendor.vend(caller_id(router.current_event.raw_event), body.command_id)
    return Vended(
        user=vended.user,
        queue_name=vended.queue_name,
        credentials=Credentials(
            access_key_id=vended.access_key_id,
            secret_access_key=vended.secret_access_key,
            session_token=vended.session_token,
            expiration=vended.expiration,
        ),
    )
