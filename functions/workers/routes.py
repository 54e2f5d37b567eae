"""HTTP routes for workspace commands (DESIGN.md contract)."""

from __future__ import annotations

import re
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from shared.api import ApiError, NotFound, caller_id
from workers.models import COMMAND_ID_PATTERN, NAME_PATTERN, CommandOut, RunCommand
from workers.service import CommandService

router = Router()

Project = Annotated[str, Path(description="A project name: [a-z0-9-]{1,63}")]


def service() -> CommandService:
    return router.context["workers"]  # type: ignore[no-any-return]


def _project(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise ApiError(400, "invalid_request", "project must match [a-z0-9-]{1,63}")
    return value


@router.post(
    "/workspaces/<project>/commands",
    summary="Queue a command for the project's workspace (output streams on the WebSocket)",
    responses={
        202: {"description": "Queued", "content": {"application/json": {"model": CommandOut}}},
        400: {"description": "Bad project/terminal name, empty or too long command"},
        404: {"description": "The project belongs to someone else"},
    },
    tags=["workers"],
)
def run_command(project: Project, body: RunCommand) -> Response[str]:
    user = caller_id(router.current_event.raw_event)
    command = service().submit(user, _project(project), body.terminal, body.command)
    return Response(202, content_types.APPLICATION_JSON, command.model_dump_json())


@router.get(
    "/workspaces/<project>/commands/<command_id>",
    summary="A command's status, exit code, duration and log location",
    tags=["workers"],
)
def get_command(
    project: Project, command_id: Annotated[str, Path(description="cmd_...")]
) -> CommandOut:
    user = caller_id(router.current_event.raw_event)
    if not re.fullmatch(COMMAND_ID_PATTERN, command_id):
        raise NotFound("command")
    return service().get(user, _project(project), command_id)
