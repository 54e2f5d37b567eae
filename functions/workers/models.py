"""Workspace commands: the record, its status flow and the API models.

A command is ``QUEUED`` when accepted, ``RUNNING`` once a worker holds its lease, then ends
``SUCCEEDED`` (exit code 0), ``FAILED`` (with an ``error``) or ``CANCELLED``. A started
command is never run again: if its worker vanishes it ends ``FAILED`` with
``worker_lost``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.idempotency import IdempotencyKey, idempotent_id
from shared.records import Record, iso

NAME_PATTERN = r"^[a-z0-9-]{1,63}$"
COMMAND_ID_PATTERN = r"^cmd_[0-9a-f]{28}$"
TAIL_BYTES = 4096
"""How much of the end of a command's output its record keeps."""


class CommandStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.CANCELLED})


class ErrorCode(StrEnum):
    """Why a command ended without succeeding (``error.code``)."""

    EXIT_STATUS = "exit_status"
    """The command ran and exited with a non-zero code."""
    TIMED_OUT = "timed_out"
    """It ran longer than ``workers.command_timeout_seconds`` and was killed."""
    WORKER_LOST = "worker_lost"
    """It had started, and its worker vanished (or was stopped) before it ended."""
    UNDELIVERABLE = "undeliverable"
    """Its message could not be delivered to a worker (it reached the dead-letter queue)."""
    WORKSPACE = "workspace_error"
    """The workspace could not be prepared, so it never ran."""
    CANCELLED = "cancelled"
    """Its owner cancelled it."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """Its owner went over their monthly budget before it started (``stop_over_budget``)."""


def new_command_id(now: float) -> str:
    return f"cmd_{int(now * 1000):012x}{secrets.token_hex(8)}"


def idempotent_command_id(user: str, project: str, key: str) -> str:
    """The same caller, project and key always name the same command."""
    return idempotent_id("cmd", 28, user, project, key)


@dataclass(frozen=True)
class CommandMessage:
    """What a user's queue carries for one command: ids only (the worker reads the command
    from its record) and when the API sent it — the API sends first and records second, so a
    worker may see a message whose record is still being written (or never will be)."""

    command_id: str
    project: str
    user: str
    sent_at: float = 0.0

    def body(self) -> str:
        return json.dumps(
            {
                "command_id": self.command_id,
                "project": self.project,
                "user": self.user,
                "sent_at": self.sent_at,
            }
        )

    @classmethod
    def parse(cls, body: str | None) -> CommandMessage:
        """Raises ``ValueError`` for a body that is not a berth command."""
        try:
            fields = json.loads(body or "")
            return cls(  # only the id is needed to read the record; the rest may be missing
                command_id=str(fields["command_id"]),
                project=str(fields.get("project") or ""),
                user=str(fields.get("user") or ""),
                sent_at=float(fields.get("sent_at") or 0.0),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a berth command: {body!r}") from exc


def log_key(project: str, command_id: str) -> str:
    return f"logs/{project}/{command_id}.log"


def workspace_prefix(project: str) -> str:
    return f"workspaces/{project}/"


def terminal_scope(project: str) -> str:
    """The live-updates scope of a project's terminals (granted to its owner)."""
    return f"terminal:{project}"


def topic(project: str, terminal: str) -> str:
    """Who hears a terminal's output on the WebSocket."""
    return f"{terminal_scope(project)}:{terminal}"


def tail_of(output: bytes) -> str:
    """The last ``TAIL_BYTES`` of output as text (a split character becomes U+FFFD)."""
    return output[-TAIL_BYTES:].decode("utf-8", "replace")


@dataclass(frozen=True)
class Command(Record):
    id: str
    user: str
    project: str
    terminal: str
    command: str
    status: CommandStatus
    created_at: float
    updated_at: float
    sequence: str | None = None
    """SQS FIFO sequence number: the order commands of a project were accepted in."""
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    worker: str | None = None
    """The worker that holds (or held) the command."""
    lease_expires_at: float | None = None
    """While RUNNING: the worker's lease; past it, the worker is presumed gone."""
    cancel_requested: bool | None = None
    tail: str | None = None


class RunCommand(BaseModel):
    # strict: a number must be a JSON integer, never "60", true or 1e2
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"command": "ls -la && make test", "terminal": "t1", "idempotency_key": "b7-1"}
            ]
        },
    )

    command: str = Field(min_length=1, description="Run with bash -c inside a worker only.")
    terminal: str = Field(default="t1", pattern=NAME_PATTERN)
    idempotency_key: IdempotencyKey = None

    @field_validator("command")
    @classmethod
    def _printable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("a command may not contain NUL bytes")
        return value


class CommandError(BaseModel):
    code: ErrorCode
    message: str


class CommandOut(BaseModel):
    id: str
    project: str
    terminal: str
    command: str
    status: CommandStatus
    sequence: str | None = Field(
        description="Commands of a project run in increasing sequence (acceptance) order."
    )
    exit_code: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    cancel_requested: bool
    error: CommandError | None
    output_tail: str = Field(description="The last 4 KB of the output so far.")
    log_url: str | None = Field(
        description="A presigned URL of the full output log, once the command has started."
    )

    @classmethod
    def of(cls, command: Command, *, log_url: str | None) -> CommandOut:
        duration = (
            round(command.finished_at - command.started_at, 3)
            if command.finished_at is not None and command.started_at is not None
            else None
        )
        error = (
            CommandError(code=command.error_code, message=command.error_message or "")
            if command.error_code
            else None
        )
        return cls(
            id=command.id,
            project=command.project,
            terminal=command.terminal,
            command=command.command,
            status=command.status,
            sequence=command.sequence,
            exit_code=command.exit_code,
            created_at=iso(command.created_at) or "",
            started_at=iso(command.started_at),
            finished_at=iso(command.finished_at),
            duration_seconds=duration,
            cancel_requested=bool(command.cancel_requested),
            error=error,
            output_tail=command.tail or "",
            log_url=log_url,
        )


class Output(BaseModel):
    """A piece of a command's saved log: a late subscriber reads it, then joins the live
    frames from ``next_offset`` on (each frame carries the ``offset`` of its bytes)."""

    offset: int
    data: str
    next_offset: int
    complete: bool = Field(description="The command has ended and this is the end of its log.")


MAX_PATH_CHARS = 1024 - len("workspaces/") - 63 - 1
"""S3 keys hold 1024 bytes: ``workspaces/<project>/<path>``, project names up to 63."""
PATH_RULES = (
    "Relative to the project's working directory, e.g. src/main.py: no empty, '.' or '..' "
    "parts, no control characters, and with 'workspaces/<project>/' at most 1024 bytes of UTF-8"
)


class FileOut(BaseModel):
    path: str = Field(description="Relative to the project's working directory")
    size: int
    modified_at: str


class FileList(BaseModel):
    items: list[FileOut]
    next_token: str | None = None


class FileTransfer(BaseModel):
    """A presigned request: GET ``url`` to read; POST a multipart form to ``url`` with every
    one of ``fields`` and then the file (as ``file``) to write."""

    path: str
    method: str = Field(description="GET or POST")
    url: str
    fields: dict[str, str] | None = Field(description="The form fields of a POST, in order")
    expires_at: str


class DownloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS, description=PATH_RULES)


class UploadFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS, description=PATH_RULES)
    size: int = Field(
        ge=0,
        le=5 * 1024**3,  # S3's largest single upload; the deployment's limit is in the document
        description="The file's size in bytes: the upload may not exceed it",
    )


class CommandList(BaseModel):
    items: list[CommandOut]
    next_token: str | None
