"""Workspace commands: check ownership, record, queue in order, wake the fleet; report,
list and cancel. Raises domain errors only (``shared.errors``); no HTTP here."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from shared.errors import Conflict, Invalid, LimitReached, NotFound, Unavailable
from shared.live import ConnectionStore, Ticket, TicketOut, Tickets, ticket_url
from shared.usage import Metering
from workers.config import WorkersConfig
from workers.models import (
    Command,
    CommandMessage,
    CommandStatus,
    ErrorCode,
    Output,
    idempotent_command_id,
    log_key,
    new_command_id,
    terminal_scope,
    topic,
)
from workers.repository import Claim, QueueFull, StaleCommand, WorkersRepository
from workers.scaling import QUEUED
from workers.tenancy import queue_name, tenant_of

OUTPUT_BYTES = 64 * 1024
PROJECT_HINT = (
    "project names are shared by every user of this deployment: a name you never used may be "
    "taken; choose another"
)


def whole_characters(chunk: bytes) -> bytes:
    """``chunk`` without a UTF-8 character cut at its end (at most 3 bytes shorter)."""
    for cut in range(1, 4):
        if len(chunk) >= cut and chunk[-cut] & 0xC0 == 0xC0:  # a lead byte cut short
            needed = 2 if chunk[-cut] < 0xE0 else 3 if chunk[-cut] < 0xF0 else 4
            return chunk[:-cut] if needed > cut else chunk
        if len(chunk) >= cut and chunk[-cut] < 0x80:
            return chunk
    return chunk


logger = Logger(child=True)


def tls_only(dead_letter_queue_arn: str, name: str) -> dict[str, Any]:
    """A queue policy that refuses any request not over TLS (as CDK's ``enforce_ssl``)."""
    arn = f"{dead_letter_queue_arn.rsplit(':', 1)[0]}:{name}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "sqs:*",
                "Resource": arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


class CommandService:
    def __init__(
        self,
        *,
        config: WorkersConfig,
        repository: WorkersRepository,
        sqs: Any,
        s3: Any,
        lambda_client: Any,
        clock: Callable[[], float],
        live: ConnectionStore | None = None,
        tickets: Tickets | None = None,
        metering: Metering | None = None,
    ) -> None:
        self.config = config
        self.repo = repository
        self.sqs = sqs
        self.s3 = s3
        self.lambda_client = lambda_client
        self.clock = clock
        self.live = live
        self.tickets = tickets
        self.metering = metering
        """Set when usage is on: a user over budget queues no new command."""
        self._queues: dict[str, str] = {}

    def submit(
        self,
        user: str,
        project: str,
        terminal: str,
        command_text: str,
        idempotency_key: str | None = None,
    ) -> tuple[Command, bool]:
        """``(command, True)`` when this call queued it; a retry with the same key gets the
        first one back (``False``) — never a second command."""
        if len(command_text) > self.config.command_max_chars:
            raise Invalid(
                f"a command may be at most {self.config.command_max_chars} characters",
                code="command_too_long",
            )
        self.claim(user, project)
        now = self.clock()
        command = Command(
            id=idempotent_command_id(user, project, idempotency_key)
            if idempotency_key
            else new_command_id(now),
            user=user,
            project=project,
            terminal=terminal,
            command=command_text,
            status=CommandStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        if idempotency_key and (earlier := self.repo.get(command.id)) is not None:
            return self._same(earlier, command), False
        if self.repo.pending(user) >= self.config.max_pending_per_user:
            raise self._limit_reached()
        if self.metering:
            self.metering.check(user)
        # Sent first, recorded second: a 202 means both happened; a failure of either is a
        # 503 and nothing runs — a message whose record never came is dropped by the worker
        # (``workers.models.CommandMessage``), and no record waits for an unsent message.
        # The user's own queue (only their workers read it); one message group per project:
        # its commands run one at a time, in this order. Each attempt's message is its own
        # (deduplicated by attempt, not by command): a retry after the first attempt's
        # message was dropped must still be delivered; two messages of one command run it
        # once (the worker drops a message whose command is no longer QUEUED).
        try:
            sent = self.sqs.send_message(
                QueueUrl=self.queue_of(user),
                MessageBody=CommandMessage(command.id, project, user, now).body(),
                MessageGroupId=project,
                MessageDeduplicationId=f"{command.id}-{secrets.token_hex(8)}",
            )
        except Exception as exc:
            logger.exception("could not queue a command", extra={"command_id": command.id})
            raise Unavailable("the command could not be queued; try again") from exc
        command = replace(command, sequence=sent.get("SequenceNumber"))
        try:
            self.repo.add(command, self.config.max_pending_per_user)
        except QueueFull:  # another command of theirs took the last place meanwhile
            raise self._limit_reached() from None
        except StaleCommand:  # the same key, at the same time: the other call recorded it
            earlier = self.repo.get(command.id)
            if earlier is None:
                raise
            return self._same(earlier, command), False
        self._wake_fleet()
        return command, True

    @staticmethod
    def _same(earlier: Command, asked: Command) -> Command:
        """The command an idempotency key already named, if this request is the same one."""
        if (earlier.user, earlier.project, earlier.terminal, earlier.command) != (
            asked.user,
            asked.project,
            asked.terminal,
            asked.command,
        ):
            raise Conflict(
                "this idempotency_key was used for a different command",
                code="idempotency_key_reused",
            )
        return earlier

    def _limit_reached(self) -> LimitReached:
        return LimitReached(
            f"you have {self.config.max_pending_per_user} commands queued or running; "
            "wait for one to end or cancel one",
            code="command_limit",
        )

    def claim(self, user: str, project: str) -> None:
        """Makes an unused project the caller's (its first command or file); refuses someone
        else's as if it did not exist."""
        claim = self.repo.claim_project(project, user, self.clock())
        if claim == Claim.OTHERS:
            raise NotFound("project", PROJECT_HINT)  # indistinguishable from none
        if claim == Claim.NEW and self.live is not None:
            self.live.grant(terminal_scope(project), user)  # its owner hears its terminals

    def connect_url(self, user: str, project: str, terminal: str) -> TicketOut:
        """A URL that opens one WebSocket connection, once, hearing this terminal and nothing
        else, for a browser with no AWS credentials (its owner's backend hands it over)."""
        self.check_owner(user, project)
        if self.tickets is None or not self.config.websocket_url:
            raise Unavailable("live updates are not configured for this deployment")
        return ticket_url(
            self.tickets,
            Ticket(user, topic(project, terminal)),
            self.config.websocket_url,
            self.config.connect_url_seconds,
        )

    def check_owner(self, user: str, project: str) -> None:
        if self.repo.owner_of(project) != user:
            raise NotFound("project", PROJECT_HINT)

    def queue_of(self, user: str) -> str:
        """The user's command queue, made on their first command: FIFO (one message group per
        project), encrypted, TLS only, the lease as visibility timeout, redriven to the one
        dead-letter queue. ``CreateQueue`` with the same attributes returns the same queue."""
        if user not in self._queues:
            name = queue_name(self.config.user_queue_prefix, user)
            self._queues[user] = self.sqs.create_queue(
                QueueName=name,
                Attributes={
                    "FifoQueue": "true",
                    "DeduplicationScope": "messageGroup",
                    "FifoThroughputLimit": "perMessageGroupId",
                    "SqsManagedSseEnabled": "true",
                    "VisibilityTimeout": str(self.config.lease_seconds),
                    "MessageRetentionPeriod": str(4 * 24 * 3600),
                    "RedrivePolicy": json.dumps(
                        {
                            "deadLetterTargetArn": self.config.dead_letter_queue_arn,
                            "maxReceiveCount": self.config.max_receive_count,
                        }
                    ),
                    "Policy": json.dumps(tls_only(self.config.dead_letter_queue_arn, name)),
                },
                tags={"berth:tenant": tenant_of(user)},
            )["QueueUrl"]
        return self._queues[user]

    def get(self, user: str, project: str, command_id: str) -> Command:
        command = self.repo.get(command_id)
        if command is None or command.user != user or command.project != project:
            raise NotFound("command")
        return command

    def list(
        self, user: str, project: str, limit: int, token: str | None
    ) -> tuple[list[Command], str | None]:
        self.check_owner(user, project)
        return self.repo.list_for_project(project, limit, token)

    def cancel(self, user: str, project: str, command_id: str) -> Command:
        """A queued command ends CANCELLED at once; a running one is asked to stop (its
        worker ends it CANCELLED within the cancel grace period); an ended one is left."""
        for _ in range(3):  # it may start or end between the read and the write
            command = self.get(user, project, command_id)
            try:
                if command.status == CommandStatus.QUEUED:
                    self.repo.finish(
                        command,
                        CommandStatus.CANCELLED,
                        self.clock(),
                        error=(ErrorCode.CANCELLED, "cancelled before it started"),
                    )
                    return self.get(user, project, command_id)
                if command.status == CommandStatus.RUNNING:
                    return self.repo.request_cancel(command.id, self.clock())
                return command
            except StaleCommand:
                continue
        return self.get(user, project, command_id)

    def output(self, user: str, project: str, command_id: str, offset: int) -> Output:
        """Up to ``OUTPUT_BYTES`` of the saved log from ``offset``, ending at a whole UTF-8
        character unless it is the end of an ended command's log; ``next_offset`` counts the
        log's bytes (bytes that are not UTF-8 are U+FFFD in ``data``)."""
        command = self.get(user, project, command_id)
        try:
            chunk = self.s3.get_object(
                Bucket=self.config.workspaces_bucket,
                Key=log_key(project, command_id),
                Range=f"bytes={offset}-{offset + OUTPUT_BYTES - 1}",
            )["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {
                "NoSuchKey",
                "InvalidRange",
                "404",
                "416",
            }:
                raise
            chunk = b""
        if len(chunk) == OUTPUT_BYTES or not command.status.finished:
            chunk = whole_characters(chunk)  # the rest of a cut character comes with the next read
        return Output(
            offset=offset,
            data=chunk.decode("utf-8", "replace"),
            next_offset=offset + len(chunk),
            complete=command.status.finished and len(chunk) < OUTPUT_BYTES,
        )

    def log_url(self, command: Command) -> str | None:
        """Where to download the full output (once the command has started)."""
        if command.started_at is None:
            return None
        return str(
            self.s3.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.config.workspaces_bucket,
                    "Key": log_key(command.project, command.id),
                },
                ExpiresIn=self.config.log_url_seconds,
            )
        )

    def _wake_fleet(self) -> None:
        """One queued command must not wait for the scaler's next tick to get a worker."""
        if not self.config.scaler_function:
            return
        try:
            self.lambda_client.invoke(
                FunctionName=self.config.scaler_function,
                InvocationType="Event",
                Payload=json.dumps({"reason": QUEUED}).encode(),
            )
        except Exception:  # the scheduled run catches up within a minute
            logger.exception("could not wake the scaler")
