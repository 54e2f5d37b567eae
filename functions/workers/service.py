"""Workspace commands: check ownership, record, queue, wake the fleet; report status."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from shared.api import ApiError, NotFound
from workers.config import WorkersConfig
from workers.models import Command, CommandOut, CommandStatus, new_command_id
from workers.repository import WorkersRepository

logger = Logger(child=True)


class CommandService:
    def __init__(
        self,
        *,
        config: WorkersConfig,
        repository: WorkersRepository,
        sqs: Any,
        lambda_client: Any,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.repo = repository
        self.sqs = sqs
        self.lambda_client = lambda_client
        self.clock = clock

    def submit(self, user: str, project: str, terminal: str, command_text: str) -> CommandOut:
        if len(command_text) > self.config.command_max_chars:
            raise ApiError(
                400,
                "command_too_long",
                f"a command may be at most {self.config.command_max_chars} characters",
            )
        now = self.clock()
        if not self.repo.claim_project(project, user, now):
            raise NotFound("project")  # someone else's project is indistinguishable from none
        command = Command(
            id=new_command_id(now),
            user=user,
            project=project,
            terminal=terminal,
            command=command_text,
            status=CommandStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        self.repo.put(command)
        # The message carries ids only; the worker reads the command from the record.
        self.sqs.send_message(
            QueueUrl=self.config.queue_url,
            MessageBody=json.dumps({"command_id": command.id, "project": project}),
        )
        self._wake_fleet()
        return CommandOut.of(command, self.config.workspaces_bucket)

    def get(self, user: str, project: str, command_id: str) -> CommandOut:
        command = self.repo.get(command_id)
        if command is None or command.user != user or command.project != project:
            raise NotFound("command")
        return CommandOut.of(command, self.config.workspaces_bucket)

    def _wake_fleet(self) -> None:
        """One queued command must not wait for the scaler's next tick to get a worker."""
        if not self.config.scaler_function:
            return
        try:
            self.lambda_client.invoke(
                FunctionName=self.config.scaler_function, InvocationType="Event", Payload=b"{}"
            )
        except Exception:  # the scheduled run catches up within a minute
            logger.exception("could not wake the scaler")
