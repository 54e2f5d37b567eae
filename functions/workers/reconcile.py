"""Nothing stays QUEUED or RUNNING forever.

- A RUNNING command whose lease ran out lost its worker: it ends ``FAILED worker_lost``
  with the output its worker had saved, and is never run again (``declare_lost``; a worker
  that receives the command's message again does the same).
- A message that reached the dead-letter queue could not be delivered: its command, if not
  over yet, ends ``FAILED undeliverable``.

The reconciler does both on a schedule; every end is the same conditional write workers use,
so it never overrules a worker that still holds a live lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.usage import Metering
from workers.models import Command, CommandMessage, CommandStatus, ErrorCode, topic
from workers.repository import StaleCommand, WorkersRepository

log = logging.getLogger("berth.workers")

Publish = Callable[[str, dict[str, Any]], Any]
LOST_MESSAGE = (
    "its worker stopped answering before the command ended; it was not run again "
    "(output_tail and log_url hold what it printed until then)"
)
UNDELIVERABLE_MESSAGE = "its message could not be delivered to a worker (dead-letter queue)"
MAX_DEAD_LETTER_BATCHES = 50


def lease_expired(command: Command, now: float) -> bool:
    return (
        command.status == CommandStatus.RUNNING
        and command.lease_expires_at is not None
        and command.lease_expires_at <= now
    )


def declare_lost(repository: WorkersRepository, command: Command, now: float) -> bool:
    """Ends a RUNNING command whose lease has expired; False if it has none to lose (or its
    worker renewed the lease meanwhile)."""
    if not lease_expired(command, now):
        return False
    try:
        repository.finish(
            command,
            CommandStatus.FAILED,
            now,
            error=(ErrorCode.WORKER_LOST, LOST_MESSAGE),
            worker=command.worker,
            lease_expires_at=command.lease_expires_at,
        )
    except StaleCommand:
        return False
    return True


def final_frame(command: Command, status: CommandStatus) -> tuple[str, dict[str, Any]]:
    """The status frame a terminal hears when berth (not its worker) ends a command. It has no
    ``seq``: the worker that numbered the frames is gone."""
    return topic(command.project, command.terminal), {
        "type": "status",
        "command_id": command.id,
        "seq": None,
        "data": {"status": status.value},
    }


@dataclass
class Reconciler:
    repository: WorkersRepository
    sqs: Any
    dead_letter_queue_url: str
    clock: Callable[[], float]
    retire_after_seconds: float = 0
    """An ended command leaves the active index this long after it ended (the scaler's
    reserve counts the projects active within it)."""
    publish: Publish = lambda *_: 0
    metering: Metering | None = None
    """With ``limits.stop_over_budget`` on: a user over budget has their queued commands
    cancelled (running ones finish)."""
    ended: dict[str, list[str]] = field(default_factory=dict)

    def run(self) -> dict[str, list[str]]:
        self.ended = {
            "worker_lost": self.end_lost(),
            "undeliverable": self.drain_dead_letters(),
            "budget_exceeded": self.cancel_over_budget(),
        }
        return self.ended

    def cancel_over_budget(self) -> list[str]:
        queued = [c for c in self.repository.active() if c.status == CommandStatus.QUEUED]
        over = self.metering.to_stop(c.user for c in queued) if self.metering else {}
        cancelled = []
        for command in queued:
            if command.user not in over:
                continue
            try:
                self.repository.finish(
                    command,
                    CommandStatus.CANCELLED,
                    self.clock(),
                    error=(ErrorCode.BUDGET_EXCEEDED, over[command.user].said()),
                )
            except StaleCommand:
                continue  # it started (or ended) meanwhile: it runs to its end
            cancelled.append(command.id)
            self._tell(command, CommandStatus.CANCELLED)
        return cancelled

    def end_lost(self) -> list[str]:
        """Ends lost commands; takes ended ones out of the active index once they are no
        longer warm."""
        now = self.clock()
        lost = []
        for command in self.repository.active():
            if command.status.finished:
                if (command.finished_at or 0) <= now - self.retire_after_seconds:
                    self.repository.retire(command.id)
            elif declare_lost(self.repository, command, now):
                lost.append(command.id)
                self._tell(command, CommandStatus.FAILED)
        return lost

    def drain_dead_letters(self) -> list[str]:
        ended: list[str] = []
        for _ in range(MAX_DEAD_LETTER_BATCHES):
            messages = self.sqs.receive_message(
                QueueUrl=self.dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                if ended_id := self._undeliverable(message):
                    ended.append(ended_id)
                self.sqs.delete_message(
                    QueueUrl=self.dead_letter_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return ended

    def _undeliverable(self, message: dict[str, Any]) -> str | None:
        """The id of the command the dead letter ended, if it ended one."""
        try:
            command_id = CommandMessage.parse(message.get("Body")).command_id
        except ValueError:
            log.error("dead letter that is not a berth command: %r", message.get("Body"))
            return None
        for _ in range(3):
            command = self.repository.get(command_id)
            if command is None or command.status.finished:
                return None
            if command.status == CommandStatus.RUNNING and not lease_expired(command, self.clock()):
                return None  # its worker is alive and will record how it ended
            try:
                self.repository.finish(
                    command,
                    CommandStatus.FAILED,
                    self.clock(),
                    error=(ErrorCode.UNDELIVERABLE, UNDELIVERABLE_MESSAGE),
                )
            except StaleCommand:
                continue
            self._tell(command, CommandStatus.FAILED)
            return command.id
        return None

    def _tell(self, command: Command, status: CommandStatus) -> None:
        try:
            self.publish(*final_frame(command, status))
        except Exception:
            log.exception("could not tell the terminal of %s", command.id)
