"""HTTP routes for workspace commands: parse, call the service, build the response."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from shared.api import caller_id, documented
from shared.errors import NotFound
from shared.live import TicketOut
from workers.models import (
    COMMAND_ID_PATTERN,
    NAME_PATTERN,
    Command,
    CommandList,
    CommandOut,
    DownloadFile,
    FileList,
    FileTransfer,
    Output,
    RunCommand,
    UploadFile,
)

if TYPE_CHECKING:  # the service (and boto3) load when the first request needs them
    from workers.files import WorkspaceFiles
    from workers.service import CommandService

router = Router()

Project = Annotated[str, Path(description="A project name", pattern=NAME_PATTERN)]
Terminal = Annotated[str, Path(description="A terminal name", pattern=NAME_PATTERN)]
CommandId = Annotated[
    str,
    Path(description="A command id (cmd_...)", json_schema_extra={"pattern": COMMAND_ID_PATTERN}),
]


def service() -> CommandService:
    return router.context["workers"]  # type: ignore[no-any-return]


def files() -> WorkspaceFiles:
    return router.context["files"]  # type: ignore[no-any-return]


def _caller() -> str:
    return caller_id(router.current_event.raw_event)


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
    responses=documented(
        {
            202: ("Queued", CommandOut),
            200: ("The command this idempotency_key already queued", CommandOut),
        },
        {
            404: "The project belongs to someone else",
            409: "idempotency_key_reused: the key was used for a different command",
            503: "unavailable: the queue refused it; nothing was queued",
        },
    ),
    tags=["workers"],
)
def run_command(project: Project, body: RunCommand) -> Response[str]:
    command, queued = service().submit(
        _caller(), project, body.terminal, body.command, body.idempotency_key
    )
    return _json(202 if queued else 200, command)


@router.get(
    "/workspaces/<project>/commands",
    summary="The project's commands, newest first",
    responses=documented(
        {200: ("A page of commands", CommandList)}, {404: "No such project of the caller's"}
    ),
    tags=["workers"],
)
def list_commands(
    project: Project,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> CommandList:
    commands, token = service().list(_caller(), project, limit, next_token)
    return CommandList(items=[_out(c) for c in commands], next_token=token)


@router.get(
    "/workspaces/<project>/commands/<command_id>",
    summary="A command's status, exit code, the end of its output and its full log's URL",
    responses=documented(
        {200: ("The command", CommandOut)}, {404: "No such command of the caller's"}
    ),
    tags=["workers"],
)
def get_command(project: Project, command_id: CommandId) -> CommandOut:
    return _out(service().get(_caller(), project, _command_id(command_id)))


@router.get(
    "/workspaces/<project>/commands/<command_id>/output",
    summary="A command's output from a byte offset, as far as its log is saved",
    description="Read from offset 0, then from next_offset; with a WebSocket subscription, "
    "print live frames whose offset is at or past next_offset (no gap, no repeat).",
    responses=documented(
        {200: ("A piece of the log", Output)}, {404: "No such command of the caller's"}
    ),
    tags=["workers"],
)
def get_output(
    project: Project,
    command_id: CommandId,
    offset: Annotated[int, Query(ge=0, le=2**53)] = 0,
) -> Output:
    return service().output(_caller(), project, _command_id(command_id), offset)


@router.delete(
    "/workspaces/<project>/commands/<command_id>",
    summary="Cancel a queued command, or stop a running one (SIGTERM, then SIGKILL)",
    responses=documented(
        {
            200: ("Ended (cancelled now, or it had already ended)", CommandOut),
            202: ("Running: its worker stops it and ends it CANCELLED", CommandOut),
        },
        {404: "No such command of the caller's"},
    ),
    tags=["workers"],
)
def cancel_command(project: Project, command_id: CommandId) -> Response[str]:
    command = service().cancel(_caller(), project, _command_id(command_id))
    return _json(200 if command.status.finished else 202, command)


@router.post(
    "/workspaces/<project>/terminals/<terminal>/connect",
    summary="A single-use URL that lets a browser hear one terminal, with no AWS credentials",
    description=(
        "For a product's backend to hand its end user's page: the URL opens one WebSocket "
        "connection, once, within `workers.connect_url_seconds`; the connection hears the "
        "terminal's output and status frames and may send nothing (commands go through this "
        "API). Owner only."
    ),
    responses=documented(
        {200: ("Open the url with a WebSocket client (a browser)", TicketOut)},
        {404: "No such project of the caller's"},
    ),
    tags=["workers"],
)
def connect_terminal(project: Project, terminal: Terminal) -> TicketOut:
    return service().connect_url(_caller(), project, terminal)


@router.get(
    "/workspaces/<project>/files",
    summary="The project's files (its commands' working directory), by path",
    responses=documented(
        {200: ("A page of files", FileList)}, {404: "No such project of the caller's"}
    ),
    tags=["workers"],
)
def list_files(
    project: Project,
    prefix: Annotated[str, Query(max_length=1024, description="Only paths starting so")] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> FileList:
    items, token = files().list(_caller(), project, prefix, limit, next_token)
    return FileList(items=items, next_token=token)


@router.post(
    "/workspaces/<project>/files/download",
    summary="A presigned URL to read one of the project's files",
    responses=documented(
        {200: ("GET the url", FileTransfer)},
        {404: "No such project of the caller's, or no such file"},
    ),
    tags=["workers"],
)
def download_file(project: Project, body: DownloadFile) -> FileTransfer:
    return files().download(_caller(), project, body.path)


@router.post(
    "/workspaces/<project>/files/upload",
    summary="A presigned form to write one of the project's files (the next command sees it)",
    description="An unused project becomes the caller's, as with its first command.",
    responses=documented(
        {200: ("POST the form to the url", FileTransfer)},
        {404: "The project belongs to someone else"},
    ),
    tags=["workers"],
)
def upload_file(project: Project, body: UploadFile) -> FileTransfer:
    return files().upload(_caller(), project, body.path, body.size)
