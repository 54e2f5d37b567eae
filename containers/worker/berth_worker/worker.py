"""The worker loop: one message at a time, protected from scale-in while it works.

For each message: protect the task, claim the command (QUEUED/RUNNING → RUNNING), sync the
workspace down, run ``bash -c`` with a timeout while streaming output, sync files back, store
the full log, record the exit code, delete the message, drop the protection. SIGTERM: finish
the command if it ends within the grace period, otherwise stop it and give the message back
(visibility 0) with the command QUEUED again — nothing is lost, nothing runs twice on a
healthy worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from berth_worker.protection import TaskProtection
from berth_worker.stream import run
from berth_worker.sync import WorkspaceSync
from workers.models import Command, CommandStatus, log_key, topic
from workers.repository import StaleCommand, WorkersRepository

log = logging.getLogger("berth.worker")

Publish = Callable[[str, dict[str, Any]], Any]


@dataclass
class Worker:
    sqs: Any
    queue_url: str
    repository: WorkersRepository
    sync: WorkspaceSync
    s3: Any
    bucket: str
    publish: Publish
    protection: TaskProtection
    idle_seconds: float
    command_timeout: float
    stop_grace: float
    clock: Callable[[], float] = time.time
    metrics: Callable[[str, float, str], None] = lambda *_: None
    stopping: bool = False
    handled: list[str] = field(default_factory=list)

    def stop(self, *_: Any) -> None:
        """SIGTERM: finish or hand back the current command, take no new one."""
        self.stopping = True
        self._stop_requested_at = time.monotonic()

    def run_forever(self) -> int:
        idle_since = time.monotonic()
        while not self.stopping:
            wait = max(1, min(20, round(self.idle_seconds - (time.monotonic() - idle_since))))
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=wait
            ).get("Messages", [])
            if not messages:
                if time.monotonic() - idle_since >= self.idle_seconds:
                    log.info("idle for %s s with an empty queue: exiting", self.idle_seconds)
                    return 0
                continue
            self.handle(messages[0])
            idle_since = time.monotonic()
        return 0

    def handle(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        body = json.loads(message.get("Body") or "{}")
        command = self.repository.get(str(body.get("command_id", "")))
        if command is None or command.status.finished:
            self._delete(receipt)  # unknown, or already done (a duplicate delivery)
            return
        self.protection.set(True)
        try:
            self._work(command, receipt)
        finally:
            self.protection.set(False)

    def _work(self, command: Command, receipt: str) -> None:
        started = self.clock()
        running = command.moved(CommandStatus.RUNNING, started, started_at=started)
        try:
            self.repository.move(running, {CommandStatus.QUEUED, CommandStatus.RUNNING})
        except StaleCommand:
            self._delete(receipt)
            return
        channel = topic(command.project, command.terminal)
        sequence = iter(range(1, 1 << 62))
        self._frame(channel, command, next(sequence), "status", {"status": "RUNNING"})
        try:
            self.sync.down(command.project)
            outcome = run(
                command.command,
                self.sync.directory(command.project),
                timeout=self.command_timeout,
                emit=lambda data: self._frame(
                    channel, command, next(sequence), "output", data.decode("utf-8", "replace")
                ),
                should_stop=self._give_up,
            )
        except Exception as exc:  # the workspace could not be synced: the command fails
            log.exception("command %s failed before it ran", command.id)
            self._finish(running, receipt, channel, next(sequence), 1, f"worker error: {exc}", b"")
            return
        if self.stopping and not outcome.timed_out and self._gave_up:
            self._hand_back(running, receipt)
            return
        self.sync.up(command.project)
        error = f"timed out after {self.command_timeout:.0f} s" if outcome.timed_out else None
        code = 124 if outcome.timed_out else outcome.exit_code
        self._finish(running, receipt, channel, next(sequence), code, error, outcome.log)

    _gave_up = False
    _stop_requested_at = 0.0

    def _give_up(self) -> bool:
        """Stop the command only when SIGTERM's grace period is nearly used up."""
        if self.stopping and time.monotonic() - self._stop_requested_at >= self.stop_grace:
            self._gave_up = True
        return self._gave_up

    def _finish(
        self,
        running: Command,
        receipt: str,
        channel: str,
        seq: int,
        exit_code: int,
        error: str | None,
        output: bytes,
    ) -> None:
        self.s3.put_object(
            Bucket=self.bucket, Key=log_key(running.project, running.id), Body=output
        )
        finished = self.clock()
        status = CommandStatus.SUCCEEDED if exit_code == 0 else CommandStatus.FAILED
        done = running.moved(
            status, finished, finished_at=finished, exit_code=exit_code, error=error
        )
        self.repository.move(done, {CommandStatus.RUNNING})
        self._frame(
            channel, running, seq, "status", {"status": status.value, "exit_code": exit_code}
        )
        self._delete(receipt)
        self.handled.append(running.id)
        self.metrics("CommandDuration", finished - (running.started_at or finished), "Seconds")
        if status == CommandStatus.FAILED:
            self.metrics("CommandFailures", 1, "Count")

    def _hand_back(self, running: Command, receipt: str) -> None:
        queued = running.moved(CommandStatus.QUEUED, self.clock(), started_at=None)
        self.repository.move(queued, {CommandStatus.RUNNING})
        self.sqs.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
        )
        log.info("stopping: handed %s back to the queue", running.id)

    def _frame(self, channel: str, command: Command, seq: int, kind: str, data: Any) -> None:
        try:
            self.publish(
                channel, {"type": kind, "command_id": command.id, "seq": seq, "data": data}
            )
        except Exception:  # a lost frame is visible to clients as a gap in seq; the log has it
            log.exception("could not publish frame %s of %s", seq, command.id)

    def _delete(self, receipt: str) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)
