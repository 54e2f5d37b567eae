"""Workspace commands: the record, its status flow and the API models."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.records import Record, iso

NAME_PATTERN = r"^[a-z0-9-]{1,63}$"
COMMAND_ID_PATTERN = r"^cmd_[0-9a-f]{28}$"


class CommandStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def finished(self) -> bool:
        return self in {CommandStatus.SUCCEEDED, CommandStatus.FAILED}


def new_command_id(now: float) -> str:
    return f"cmd_{int(now * 1000):012x}{secrets.token_hex(8)}"


def log_key(project: str, command_id: str) -> str:
    return f"logs/{project}/{command_id}.log"


def workspace_prefix(project: str) -> str:
    return f"workspaces/{project}/"


def topic(project: str, terminal: str) -> str:
    """Who hears a terminal's output on the WebSocket."""
    return f"terminal:{project}:{terminal}"


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
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error: str | None = None

    def moved(self, status: CommandStatus, now: float, **changes: Any) -> Command:
        return replace(self, status=status, updated_at=now, **changes)


class RunCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, description="Run with bash -c inside the worker only.")
    terminal: str = Field(default="t1", pattern=NAME_PATTERN)

    @field_validator("command")
    @classmethod
    def _printable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("a command may not contain NUL bytes")
        return value


class CommandOut(BaseModel):
    id: str
    project: str
    terminal: str
    command: str
    status: CommandStatus
    exit_code: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_seconds: float | None
    log: str
    """Where the full output log is stored (s3://bucket/key) once the command ran."""
    error: str | None

    @classmethod
    def of(cls, command: Command, bucket: str) -> CommandOut:
        duration = (
            round(command.finished_at - command.started_at, 3)
            if command.finished_at is not None and command.started_at is not None
            else None
        )
        return cls(
            id=command.id,
            project=command.project,
            terminal=command.terminal,
            command=command.command,
            status=command.status,
            exit_code=command.exit_code,
            created_at=iso(command.created_at) or "",
            started_at=iso(command.started_at),
            finished_at=iso(command.finished_at),
            duration_seconds=duration,
            log=f"s3://{bucket}/{log_key(command.project, command.id)}",
            error=command.error,
        )
