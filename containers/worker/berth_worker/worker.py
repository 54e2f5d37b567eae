"""The worker loop: one command at a time, under a lease, never run twice.

For each message (one project's next command; the FIFO queue holds the project's later
commands back until this one is deleted):

- the command is already over → drop the message (a duplicate delivery);
- it is RUNNING → it had started on a worker that is gone once its lease has expired: end it
  ``FAILED worker_lost`` with the output it had, never run it again; while the lease is still
  live its worker is alive, so leave the message for later;
- it is QUEUED → claim it (a conditional write: one worker wins) and run it: sync the
  workspace down, give it to the command's user, run ``bash -c`` streaming its output, take
  the workspace back, sync it up, store the log and the result, delete the message — all
  under a heartbeat that renews the lease, saves the output so far and notices a cancel.

Messages come from two lanes (``workers.scaling.Lane``): the follow-up lane first, then the
command queue; a *held* worker (one of the longest idle, as many as the scaler published:
``workers.scaling.is_held``) polls the follow-up lane only, so a person typing their next
command finds an idle worker a burst could not take. A worker whose command just ended is the
newest idle one, never held: it takes its project's next command at once.

SIGTERM: finish the command if it ends within the grace period; otherwise stop it, keep its
file changes and end it ``FAILED worker_lost``. A command that starts is never started again.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from berth_worker.access import AccessBroker, CommandAccess
from berth_worker.isolation import Isolation, LeftoversSurvive, command_environment
from berth_worker.lease import Lease
from berth_worker.protection import TaskProtection
from berth_worker.stream import Stop, run
from berth_worker.sync import SyncReport, WorkspaceSync
from workers.models import Command, CommandStatus, ErrorCode, log_key, tail_of, topic
from workers.reconcile import declare_lost
from workers.repository import StaleCommand
from workers.reserve import IDLE_SEEN_SECONDS, FleetRegistry, FleetView
from workers.scaling import is_held, may_leave

log = logging.getLogger("berth.worker")

Publish = Callable[[str, dict[str, Any]], Any]
TIMEOUT_EXIT_CODE = 124
FLUSH_BYTES = 1 << 20
COMMANDS_POLL_SECONDS = 1
"""With a follow-up lane, a worker free to take any command long-polls the command queue
this long at most, then looks at the lane again: a follow-up no held worker waits for (a
project's first follow-up, before the scaler holds one) waits at most this long."""
HELD_POLL_SECONDS = 5
"""A held worker long-polls the follow-up lane this long at most, then reads whether it is
still held."""


class Receipt(NamedTuple):
    """Where a received message came from and its receipt handle."""

    queue_url: str
    handle: str


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Worker:
    sqs: Any
    queue_url: str
    access: AccessBroker
    bucket: str
    workdir: Path
    publish: Publish
    protection: TaskProtection
    isolation: Isolation
    idle_seconds: float
    command_timeout: float
    lease_seconds: float
    stop_grace: float
    cancel_grace: float
    clock: Callable[[], float] = time.time
    metrics: Callable[[str, float, str], None] = lambda *_: None
    name: str = field(default_factory=worker_id)
    fleet: FleetRegistry | None = None
    """The warm reserve (``workers.reserve``); None: an idle worker leaves after
    ``idle_seconds``."""
    follow_ups_url: str | None = None
    """The follow-up lane; None: only ``queue_url``."""
    stopping: bool = False
    _said_idle_at: float = 0.0
    handled: list[str] = field(default_factory=list)
    _stop_requested_at: float = 0.0

    def __post_init__(self) -> None:
        self.isolation.prepare_root(self.workdir)
        self.state = self.workdir / ".berth"
        self.state.mkdir(mode=0o700, exist_ok=True)

    def stop(self, *_: Any) -> None:
        """SIGTERM: finish or end the current command, take no new one."""
        self.stopping = True
        self._stop_requested_at = time.monotonic()

    def run_forever(self) -> int:
        """Takes commands until SIGTERM, or until it has been idle ``idle_seconds`` and the
        fleet holds more idle workers than the warm reserve (then it leaves)."""
        idle_since, idle_since_wall = time.monotonic(), self.clock()
        self._say_idle(idle_since_wall)
        try:
            while not self.stopping:
                idle_for = time.monotonic() - idle_since
                before_check = self.idle_seconds - idle_for
                wait = before_check if before_check >= 1 else self.idle_seconds
                received = self._receive(max(1, min(20, round(wait))), idle_since_wall)
                if (
                    received is None
                    and time.monotonic() - idle_since >= self.idle_seconds
                    and self._may_leave(idle_since_wall)
                ):
                    # A held worker polled only the lane: what waits in the command queue
                    # is taken before it leaves.
                    received = self._last_look()
                    if received is None:
                        log.info("idle beyond the warm reserve: exiting")
                        return 0
                if received is None:
                    self._say_idle(idle_since_wall)
                    continue
                self._say_busy()
                try:
                    self.handle(*received)
                except Exception:  # its lease runs out and the command ends worker_lost
                    log.exception("could not handle a message")
                idle_since, idle_since_wall = time.monotonic(), self.clock()
                self._say_idle(idle_since_wall)
        finally:
            self._say_busy(attempts=3)  # leaving: not idle any more
        return 0

    # --- receiving -----------------------------------------------------------------------------

    def _receive(self, wait: int, idle_since: float) -> tuple[dict[str, Any], str] | None:
        """The next message and its queue: the follow-up lane first; a held worker polls
        only the lane."""
        if self.follow_ups_url is None:
            return self._poll_any(wait)
        if self._held(idle_since):
            return self._poll(self.follow_ups_url, min(wait, HELD_POLL_SECONDS))
        return self._poll_any(min(wait, COMMANDS_POLL_SECONDS))

    def _last_look(self) -> tuple[dict[str, Any], str] | None:
        """Both lanes, without waiting: anything a leaving worker should take first."""
        return self._poll_any(0)

    def _poll_any(self, wait: int) -> tuple[dict[str, Any], str] | None:
        """The follow-up lane without waiting (if there is one), then the command queue for
        up to ``wait`` seconds."""
        if self.follow_ups_url is not None and (found := self._poll(self.follow_ups_url, 0)):
            return found
        return self._poll(self.queue_url, wait)

    def _poll(self, queue_url: str, wait: int) -> tuple[dict[str, Any], str] | None:
        messages = self.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait,
            VisibilityTimeout=int(self.lease_seconds),
        ).get("Messages", [])
        return (messages[0], queue_url) if messages else None

    def _held(self, idle_since: float) -> bool:
        seen = self._fleet_view(idle_since)
        if seen is None:  # unknown: take any command rather than none
            return False
        view, idle = seen
        return is_held(self.name, idle, view.held)

    def _fleet_view(self, idle_since: float) -> tuple[FleetView, dict[str, float]] | None:
        """The fleet's item, and its idle workers with this one (idle since ``idle_since``);
        None without a fleet or when it cannot be read."""
        if self.fleet is None:
            return None
        try:
            view = self.fleet.view(self.clock())
        except Exception:
            log.warning("could not read the fleet's reserve", exc_info=True)
            return None
        return view, {**view.idle, self.name: idle_since}

    # --- the warm reserve ---------------------------------------------------------------------

    def _say_idle(self, since: float) -> None:
        """Tells the fleet this worker is idle (again at most every ``IDLE_SEEN_SECONDS`` / 3:
        an entry not renewed within ``IDLE_SEEN_SECONDS`` no longer counts)."""
        now = self.clock()
        if self.fleet is None or now - self._said_idle_at < IDLE_SEEN_SECONDS / 3:
            return
        try:
            self.fleet.idle(self.name, since, now)
            self._said_idle_at = now
        except Exception:  # the reserve is an optimisation: never a reason to stop working
            log.warning("could not tell the fleet this worker is idle", exc_info=True)

    def _say_busy(self, attempts: int = 1) -> None:
        """No longer idle. Leaving, it tries ``attempts`` times: an entry left behind would
        count as an idle worker (holding, or letting another leave) for ``IDLE_SEEN_SECONDS``."""
        if self.fleet is None:
            return
        self._said_idle_at = 0.0
        for attempt in range(1, attempts + 1):
            try:
                self.fleet.busy(self.name)
                return
            except Exception:
                log.warning("could not tell the fleet this worker is busy", exc_info=True)
                if attempt < attempts:
                    time.sleep(0.2 * attempt)

    def _may_leave(self, since: float) -> bool:
        seen = self._fleet_view(since)
        if seen is None:  # unknown reserve: leave; the scaler starts workers when needed
            return True
        view, idle = seen
        return may_leave(self.name, idle, view.reserve, view.held)

    # --- one message --------------------------------------------------------------------------

    def handle(self, message: dict[str, Any], queue_url: str | None = None) -> None:
        """One message, received from ``queue_url`` (default: the command queue)."""
        receipt = Receipt(queue_url or self.queue_url, message["ReceiptHandle"])
        try:
            body = json.loads(message.get("Body") or "{}")
            command_id, project = str(body["command_id"]), str(body["project"])
            user = str(body["user"])
        except (ValueError, KeyError, TypeError):
            log.error("dropping a message that is not a berth command: %r", message.get("Body"))
            self._delete(receipt)
            return
        access = self.access.for_command(project, command_id, user)
        command = access.repository.get(command_id)
        if command is None or command.status.finished:
            self._delete(receipt)  # unknown, or over (a duplicate, or cancelled while queued)
            return
        if command.status == CommandStatus.RUNNING:
            self._started_elsewhere(command, access, receipt)
            return
        self.protection.set(True)
        try:
            self._run(command, access, receipt)
        finally:
            self.protection.set(False)

    def _started_elsewhere(self, command: Command, access: CommandAccess, receipt: Receipt) -> None:
        now = self.clock()
        if declare_lost(access.repository, command, now):
            self._status_frame(command, None, CommandStatus.FAILED, None)
            self._delete(receipt)
            return
        if command.lease_expires_at is not None and command.lease_expires_at > now:
            # Its worker still holds it: look again when that lease would run out.
            self.sqs.change_message_visibility(
                QueueUrl=receipt.queue_url,
                ReceiptHandle=receipt.handle,
                VisibilityTimeout=max(1, min(43200, int(command.lease_expires_at - now) + 1)),
            )
        else:  # ended meanwhile
            self._delete(receipt)

    def _run(self, queued: Command, access: CommandAccess, receipt: Receipt) -> None:
        try:
            command = access.repository.claim(
                queued.id, self.name, self.clock(), self.lease_seconds
            )
        except StaleCommand:
            return  # another worker has it, or it was cancelled: the message is theirs
        sync = self.workspace_sync(access.s3)
        output = _Output(self, command, self.state / "logs" / f"{command.id}.log")
        lease = Lease(
            sqs=self.sqs,
            queue_url=receipt.queue_url,
            receipt=receipt.handle,
            repository=access.lease_repository,
            command_id=command.id,
            worker=self.name,
            lease_seconds=self.lease_seconds,
            clock=self.clock,
            progress=lambda: output.save(access.s3, self.bucket),
            flush=lambda: output.flush(access.s3, self.bucket),
        )
        self._status_frame(command, output.next_seq(), CommandStatus.RUNNING, None)
        with lease:
            verdict = self._execute(command, sync, output, lease)
        if verdict is None:
            # Declared lost while it ran: its result is no longer ours to write.
            sync.forget(command.project)
            output.discard()
            return
        self._finish(command, access, receipt, output, *verdict)

    def _execute(
        self, command: Command, sync: WorkspaceSync, output: _Output, lease: Lease
    ) -> tuple[int, tuple[ErrorCode, str] | None] | None:
        """Runs the command in its synced workspace; None if the lease was lost meanwhile."""
        project_dir = sync.directory(command.project)
        try:
            output.warnings(sync.down(command.project))
            self.isolation.enter(project_dir)
        except Exception as exc:
            log.exception("could not prepare the workspace of %s", command.id)
            sync.forget(command.project)
            message = f"the workspace could not be prepared: {exc}"
            output.line(f"berth: {message}")
            return 1, (ErrorCode.WORKSPACE, message)
        try:
            outcome = run(
                command.command,
                project_dir,
                timeout=self.command_timeout,
                emit=output.write,
                log=output.file,
                isolation=self.isolation,
                env=command_environment(project_dir, command.project, command.id),
                should_stop=lambda: self._should_stop(lease),
                grace=self.cancel_grace,
            )
        finally:
            fenced_off = self._leave(command, sync, project_dir)
        if not fenced_off and not lease.lost:
            message = "a process it started could not be stopped; its file changes were dropped"
            output.line(f"berth: {message}")
            return 1, (ErrorCode.WORKSPACE, message)
        if lease.lost:
            return None
        try:
            output.warnings(sync.up(command.project))
        except Exception as exc:
            log.exception("could not save the workspace of %s", command.id)
            sync.forget(command.project)
            message = f"the command ran, but its file changes could not all be saved: {exc}"
            output.line(f"berth: {message}")
            return outcome.exit_code or 1, (ErrorCode.WORKSPACE, message)
        return self._verdict(outcome.exit_code, outcome.stopped)

    def _leave(self, command: Command, sync: WorkspaceSync, project_dir: Path) -> bool:
        """Ends everything of the command's uid and takes its tree back; False if something
        outlived every kill: then no root sync in a tree it may still touch, and no other
        command on this worker (it leaves)."""
        try:
            self.isolation.leave(project_dir)
        except LeftoversSurvive:
            log.error("a process of %s survived every kill; the worker leaves", command.id)
            sync.forget(command.project)
            self.stopping = True
            return False
        return True

    def workspace_sync(self, s3: Any) -> WorkspaceSync:
        return WorkspaceSync(s3, self.bucket, self.workdir, self.state)

    def _verdict(
        self, exit_code: int, stopped: Stop | None
    ) -> tuple[int, tuple[ErrorCode, str] | None]:
        if stopped == Stop.TIMEOUT:
            return TIMEOUT_EXIT_CODE, (
                ErrorCode.TIMED_OUT,
                f"timed out after {self.command_timeout:.0f} s",
            )
        if stopped == Stop.CANCEL:
            return exit_code, (ErrorCode.CANCELLED, "cancelled while it ran")
        if stopped == Stop.SHUTDOWN:
            return exit_code, (
                ErrorCode.WORKER_LOST,
                "its worker was stopped before the command ended; its file changes were kept "
                "and it was not run again",
            )
        if exit_code != 0:
            return exit_code, (ErrorCode.EXIT_STATUS, f"the command exited with {exit_code}")
        return 0, None

    def _should_stop(self, lease: Lease) -> Stop | None:
        if lease.lost:
            return Stop.LOST
        if lease.cancel_requested:
            return Stop.CANCEL
        if self.stopping and time.monotonic() - self._stop_requested_at >= max(
            0.0, self.stop_grace - self.cancel_grace
        ):
            return Stop.SHUTDOWN
        return None

    def _finish(
        self,
        command: Command,
        access: CommandAccess,
        receipt: Receipt,
        output: _Output,
        exit_code: int,
        error: tuple[ErrorCode, str] | None,
    ) -> None:
        if error and error[0] == ErrorCode.CANCELLED:
            status = CommandStatus.CANCELLED
        elif exit_code == 0 and error is None:
            status = CommandStatus.SUCCEEDED
        else:
            status = CommandStatus.FAILED
        output.close()
        output.save(access.s3, self.bucket, force=True)
        tail = output.tail()
        output.discard()
        finished = self.clock()
        try:
            access.repository.finish(
                command,
                status,
                finished,
                exit_code=exit_code,
                error=error,
                tail=tail,
                worker=self.name,
            )
        except StaleCommand:
            log.warning("%s was ended elsewhere before its worker could record it", command.id)
            return
        self._status_frame(command, output.next_seq(), status, exit_code)
        self._delete(receipt)
        self.handled.append(command.id)
        self.metrics("CommandDuration", finished - (command.started_at or finished), "Seconds")
        if status == CommandStatus.FAILED:
            self.metrics("CommandFailures", 1, "Count")

    # --- output -------------------------------------------------------------------------------

    def _status_frame(
        self, command: Command, seq: int | None, status: CommandStatus, exit_code: int | None
    ) -> None:
        data: dict[str, Any] = {"status": status.value}
        if exit_code is not None:
            data["exit_code"] = exit_code
        self._frame(command, seq, "status", data)

    def _frame(
        self, command: Command, seq: int | None, kind: str, data: Any, offset: int | None = None
    ) -> None:
        message = {"type": kind, "command_id": command.id, "seq": seq, "data": data}
        if offset is not None:
            message["offset"] = offset
        try:
            self.publish(topic(command.project, command.terminal), message)
        except Exception:  # a lost frame is visible to clients as a gap in seq; the log has it
            log.exception("could not publish frame %s of %s", seq, command.id)

    def _delete(self, receipt: Receipt) -> None:
        self.sqs.delete_message(QueueUrl=receipt.queue_url, ReceiptHandle=receipt.handle)


class _Output:
    """A command's output: frames to its terminal, the full log on disk (uploaded as it
    grows), its tail for the record."""

    def __init__(self, worker: Worker, command: Command, path: Path) -> None:
        self.worker = worker
        self.command = command
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.file = path.open("wb", buffering=0)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.seq = 0
        self.saved_size = -1
        self.offset = 0
        """Bytes of the log written so far: each output frame says where its bytes start,
        so a late subscriber can join the saved log and the live frames without a gap."""

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def write(self, data: bytes) -> None:
        """Output of the command (already written to the log by the runner)."""
        offset, self.offset = self.offset, self.offset + len(data)
        text = self.decoder.decode(data)
        if text:
            self.worker._frame(self.command, self.next_seq(), "output", text, offset)

    def line(self, text: str) -> None:
        """A line of berth's own (a warning), in the output and the log."""
        data = (text + "\n").encode()
        if not self.file.closed:
            self.file.write(data)
        offset, self.offset = self.offset, self.offset + len(data)
        self.worker._frame(self.command, self.next_seq(), "output", text + "\n", offset)

    def warnings(self, report: SyncReport) -> None:
        for warning in report.warnings:
            self.line(warning)

    def tail(self) -> str:
        size = self.path.stat().st_size
        with self.path.open("rb") as handle:
            handle.seek(max(0, size - 4096))
            return tail_of(handle.read())

    def flush(self, s3: Any, bucket: str) -> None:
        """Between heartbeats: keep the saved log close behind the live output (small logs
        only; a big one is saved at each heartbeat)."""
        if self.path.stat().st_size <= FLUSH_BYTES:
            self.save(s3, bucket)

    def save(self, s3: Any, bucket: str, force: bool = False) -> str:
        """Uploads the log if it grew (or ``force``); returns its tail."""
        size = self.path.stat().st_size
        if force or size != self.saved_size:
            s3.upload_file(str(self.path), bucket, log_key(self.command.project, self.command.id))
            self.saved_size = size
        return self.tail()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()

    def discard(self) -> None:
        """The log is in the bucket (or no longer ours): drop the local copy."""
        self.close()
        self.path.unlink(missing_ok=True)
