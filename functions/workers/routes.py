"""HTTP routes for workspace commands: parse, call the service, build the response."""

from __future__ import annotations

import re
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from shared.api import caller_id
from shared.errors import Invalid, NotFound
from workers.models import (
    COMMAND_ID_PATTERN,
    NAME_PATTERN,
    Command,
    CommandList,
    CommandOut,
    RunCommand,
)
from workers.service import CommandService

router = Router()

Project = Annotated[str, Path(description="A project name: [a-z0-9-]{1,63}")]
CommandId = Annotated[str, Path(description="A command id (cmd_...)")]


def service() -> CommandService:
    return router.context["workers"]  # type: ignore[no-any-return]


def _caller() -> str:
    return caller_id(router.current_event.raw_event)


def _project(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise Invalid("project must match [a-z0-9-]{1,63}")
    return value


def _command_id(value: str) -> str:
    if not re.fullmatch(COMMAND_ID_PATTERN, value):
        raise NotFound("command")
    return value


def _out(command: Command) -> CommandOut:
    return CommandOut.of(command, log_url=service().log_url(command))


def _json(status: int, command: Command) -> Response[str]:
    return Response(status, content_types.APPLICATION_JSON, _out(command).model_dump_json())


@router.post(
    "/workspaces/<project>/commands",
    summary="Queue a command; commands of a project run one at a time, in order",
    responses={
        202: {"description": "Queued", "content": {"application/json": {"model": CommandOut}}},
        400: {"description": "Bad project/terminal name, empty or too long command"},
        404: {"description": "The project belongs to someone else"},
        429: {"description": "command_limit: too many commands queued or running"},
    },
    tags=["workers"],
)
def run_command(project: Project, body: RunCommand) -> Response[str]:
    command = service().submit(_caller(), _project(project), body.terminal, body.command)
    return _json(202, command)


@router.get(
    "/workspaces/<project>/commands",
    summary="The project's commands, newest first",
    tags=["workers"],
)
def list_commands(
    project: Project,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> CommandList:
    commands, token = service().list(_caller(), _project(project), limit, next_token)
    return CommandList(items=[_out(c) for c in commands], next_token=token)


@router.get(
    "/workspaces/<project>/commands/<command_id>",
    summary="A command's status, exit code, the end of its output and its full log's URL",
    tags=["workers"],
)
def get_command(project: Project, command_id: CommandId) -> CommandOut:
    return _out(service().get(_caller(), _project(project), _command_id(command_id)))


@router.delete(
    "/workspaces/<project>/commands/<command_id>",
    summary="Cancel a queued command, or stop a running one (SIGTERM, then SIGKILL)",
    responses={
        200: {"description": "Ended (cancelled now, or it had already ended)"},
        202: {"description": "Running: its worker stops it and ends it CANCELLED"},
    },
    tags=["workers"],
)
def cancel_command(project: Project, command_id: CommandId) -> Response[str]:
    command = service().cancel(_caller(), _project(project), _command_id(command_id))
    return _json(200 if command.status.finished else 202, command)
