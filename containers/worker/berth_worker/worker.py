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

A worker serves one user for its whole life (``workers.scaling``). Started unbound, it waits
in the reserve, looking for its binding (``workers.reserve``: written once, by the scaler)
until it is bound or, idle ``idle_seconds`` beyond the reserve, leaves (a tombstone written
the same once-only way, so it never leaves a user who just bound it). Bound, it takes only
its user's queue — the user's projects, one message group each — and leaves after
``keep_warm_seconds`` without a command (a person reading the last output types the next
one within it), taking one last look at the queue after it stopped counting itself; once its
user has queued a command while another ran (``scripted``: work a script sends, not a person
reading), after ``idle_seconds``. It never returns to the reserve.

SIGTERM: finish the command if it ends within the grace period; otherwise stop it, keep its
file changes and end it ``FAILED worker_lost``. A command that starts is never started again.
"""

from __future__ import annotations

import codecs
import itertools
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from berth_worker.access import AccessBroker, CommandAccess, backoff
from berth_worker.isolation import Isolation, LeftoversSurvive, command_environment
from berth_worker.lease import Lease
from berth_worker.protection import TaskProtection
from berth_worker.stream import Stop, run
from berth_worker.sync import SyncReport, WorkspaceSync
from shared.errors import aws_unavailable
from workers.models import (
    Command,
    CommandMessage,
    CommandStatus,
    ErrorCode,
    log_key,
    tail_of,
    topic,
)
from workers.reconcile import declare_lost
from workers.repository import StaleCommand
from workers.reserve import LEFT, SEEN_SECONDS, FleetRegistry
from workers.scaling import may_leave
from workers.tenancy import queue_name

log = logging.getLogger("berth.worker")

Publish = Callable[[str, dict[str, Any]], Any]
T = TypeVar("T")
TIMEOUT_EXIT_CODE = 124
FLUSH_BYTES = 1 << 20
POLL_SECONDS = 20
"""A bound worker long-polls its user's queue this long at most."""
BIND_POLL_SECONDS = 0.5
"""An unbound worker looks for its binding this often (one consistent read)."""
RECORD_PAUSE_SECONDS = 0.05
RECORD_WAIT_SECONDS = 1.0
"""A message ahead of its record: looked up again after 50 ms, doubling, up to ~2 s."""
RESULT_PATIENCE_LEASES = 3
RESULT_PAUSE_SECONDS = 0.5
"""How long what a command did is tried while AWS is unavailable, and the first pause."""


class _HandBack(Exception):
    """The command cannot be prepared now for a reason that passes (AWS unavailable)."""


class Receipt(NamedTuple):
    """Where a received message came from and its receipt handle."""

    queue_url: str
    handle: str


def worker_id() -> str:
    """The worker's id: its ECS task's id (what the scaler binds), else a local one."""
    if task := os.environ.get("BERTH_TASK_ID"):
        return task
    if metadata := os.environ.get("ECS_CONTAINER_METADATA_URI_V4"):
        import urllib.request

        with urllib.request.urlopen(f"{metadata}/task", timeout=5) as response:  # noqa: S310
            return str(json.load(response)["TaskARN"]).rsplit("/", 1)[-1]
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass
class Worker:
    sqs: Any
    queue_prefix: str
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
    keep_warm_seconds: float = 60
    record_grace: float = 60
    """Longer than the API's calls may take: a message whose record is missing after this
    long will never have one (``CommandMessage``)."""
    fleet: FleetRegistry | None = None
    """The fleet's records (``workers.reserve``); None: it is never bound from outside."""
    user: str | None = None
    """The one user it serves (None while unbound)."""
    scripted: bool = False
    """Its user queued a command while an earlier one ran: it leaves after ``idle_seconds``."""
    _last_end: float | None = None
    _command_publish: Publish | None = None
    """The command at hand's publisher (its own credentials), if the broker made one."""
    stopping: bool = False
    sleep: Callable[[float], None] = time.sleep
    _said_at: float = 0.0
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
        """Waits to be bound (unless it already is), then serves its user until SIGTERM or
        ``keep_warm_seconds`` without a command."""
        try:
            if self.user is None and not self._wait_for_binding():
                return 0
            if self.user is not None:
                self.sqs = self.access.queue_client(self.user)  # its user's queue, no other
                self._serve()
        finally:
            self._gone()
        return 0

    # --- unbound: the reserve -----------------------------------------------------------------

    def _wait_for_binding(self) -> bool:
        """True once bound; False if it left the reserve unbound (or was stopped)."""
        idle_since, idle_since_wall = time.monotonic(), self.clock()
        while not self.stopping:
            user = self._binding()
            if user == LEFT:
                return False
            if user is not None:
                self.user = user
                log.info("bound to its user for the rest of its life")
                return True
            self._say("idle", idle_since_wall)
            if time.monotonic() - idle_since >= self.idle_seconds and self._may_leave(
                idle_since_wall
            ):
                if self.fleet is None or self.fleet.leave_unbound(self.name, self.clock()):
                    log.info("idle beyond the reserve, never bound: exiting")
                    return False
                continue  # bound at that very moment: serve that user
            self.sleep(BIND_POLL_SECONDS)
        return False

    def _binding(self) -> str | None:
        if self.fleet is None:
            return None
        try:
            return self.fleet.binding_of(self.name)
        except Exception:
            log.warning("could not read this worker's binding", exc_info=True)
            return None

    def _may_leave(self, idle_since: float) -> bool:
        if self.fleet is None:
            return True
        try:
            view = self.fleet.view(self.clock())
        except Exception:  # unknown reserve: leave; the scaler starts workers when needed
            log.warning("could not read the fleet's reserve", exc_info=True)
            return True
        return may_leave(self.name, {**view.idle, self.name: idle_since}, view.reserve)

    # --- bound: one user ----------------------------------------------------------------------

    def queue_url(self) -> str:
        if self.user is None:
            raise RuntimeError("an unbound worker has no queue")
        if not hasattr(self, "_queue_url"):
            self._queue_url: str = self.sqs.get_queue_url(
                QueueName=queue_name(self.queue_prefix, self.user)
            )["QueueUrl"]
        return self._queue_url

    def _serve(self) -> None:
        idle_since = time.monotonic()
        while not self.stopping:
            self._say("bound", self.clock())
            tail = self.idle_seconds if self.scripted else self.keep_warm_seconds
            remaining = tail - (time.monotonic() - idle_since)
            if remaining > 0:
                received = self._poll(max(1, min(POLL_SECONDS, math.ceil(remaining))))
                if received is None:
                    continue
            else:
                # No longer counted, then one last look: a command queued after the scaler
                # saw this worker is taken here, or gets a worker of its own.
                self._gone()
                received = self._poll(1)
                if received is None:
                    log.info("idle for %s s: exiting", tail)
                    return
            try:
                self.handle(received)
            except Exception:  # its lease runs out and the command ends worker_lost
                log.exception("could not handle a message")
            idle_since = time.monotonic()

    def _poll(self, wait: int) -> dict[str, Any] | None:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url(),
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait,
            VisibilityTimeout=int(self.lease_seconds),
        ).get("Messages", [])
        return dict(messages[0]) if messages else None

    # --- what the fleet sees ------------------------------------------------------------------

    def _say(self, state: str, since: float) -> None:
        """Idle in the reserve (since ``since``), or bound and alive — again at most every
        ``SEEN_SECONDS`` / 3: an entry not renewed within ``SEEN_SECONDS`` is not counted."""
        now = self.clock()
        if self.fleet is None or now - self._said_at < SEEN_SECONDS / 3:
            return
        try:
            if state == "idle":
                self.fleet.idle(self.name, since, now)
            elif self.user is not None:
                self.fleet.alive(self.name, self.user, now)
            self._said_at = now
        except Exception:  # advice for scaling: never a reason to stop working
            log.warning("could not tell the fleet this worker is %s", state, exc_info=True)

    def _gone(self, attempts: int = 3) -> None:
        """Not counted any more. It tries ``attempts`` times: an entry left behind would count
        as a worker for ``SEEN_SECONDS``."""
        if self.fleet is None:
            return
        self._said_at = 0.0
        for attempt in range(1, attempts + 1):
            try:
                self.fleet.gone(self.name)
                return
            except Exception:
                log.warning("could not take this worker out of the fleet", exc_info=True)
                if attempt < attempts:
                    time.sleep(0.2 * attempt)

    # --- one message --------------------------------------------------------------------------

    def handle(self, message: dict[str, Any], queue_url: str | None = None) -> None:
        """One message of its user's queue (``queue_url``: default, that queue)."""
        receipt = Receipt(queue_url or self.queue_url(), message["ReceiptHandle"])
        try:
            sent = CommandMessage.parse(message.get("Body"))
        except ValueError:
            log.error("dropping a message that is not a berth command: %r", message.get("Body"))
            self._delete(receipt)
            return
        if sent.user != self.user:  # its user's queue holds only theirs; never run another's
            log.error("dropping %s: not a command of this worker's user", sent.command_id)
            self._delete(receipt)
            return
        access = self.access.for_command(sent.project, sent.command_id, sent.user)
        self._command_publish = access.publish
        try:
            self._handle(access, sent, receipt)
        finally:
            self._command_publish = None

    def _handle(self, access: CommandAccess, sent: CommandMessage, receipt: Receipt) -> None:
        command = self._record_of(access, sent)
        if command is None:
            self._unrecorded(sent, receipt)
            return
        if command.status.finished:
            self._delete(receipt)  # over (a duplicate, or cancelled while queued)
            return
        if command.status == CommandStatus.RUNNING:
            self._started_elsewhere(command, access, receipt)
            return
        self.protection.set(True)
        try:
            self._run(command, access, receipt)
        finally:
            self.protection.set(False)

    def _record_of(self, access: CommandAccess, sent: CommandMessage) -> Command | None:
        """The command's record. The API sends before it records, so a message fresh from the
        queue may be a few milliseconds ahead of its record: look again, briefly."""
        command = access.repository.get(sent.command_id)
        pause = RECORD_PAUSE_SECONDS
        while command is None and pause <= RECORD_WAIT_SECONDS and self._young(sent):
            self.sleep(pause)
            pause *= 2
            command = access.repository.get(sent.command_id)
        return command

    def _young(self, sent: CommandMessage) -> bool:
        return self.clock() - sent.sent_at < self.record_grace

    def _unrecorded(self, sent: CommandMessage, receipt: Receipt) -> None:
        """No record: while its API call may still be writing it, the message waits (hidden,
        still at the head of its project's group, so the order holds); after that, the call
        is over without recording it — it answered 503, so nothing runs — and the message
        is dropped."""
        if not self._young(sent):
            log.warning("dropping %s: its API call never recorded it", sent.command_id)
            self._delete(receipt)
            return
        wait = sent.sent_at + self.record_grace - self.clock()
        self.sqs.change_message_visibility(
            QueueUrl=receipt.queue_url,
            ReceiptHandle=receipt.handle,
            VisibilityTimeout=max(1, min(43200, math.ceil(wait) + 1)),
        )

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
        if self._last_end is not None and command.created_at < self._last_end:
            self.scripted = True  # queued while the one before ran: nobody is reading
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
        try:
            with lease:
                verdict = self._execute(command, sync, output, lease)
        except _HandBack:
            self._hand_back(command, access, receipt, output)
            return
        self._last_end = self.clock()
        if verdict is None:
            # Declared lost while it ran: its result is no longer ours to write.
            sync.forget(command.project)
            output.discard()
            return
        self._finish(command, access, receipt, output, lease, *verdict)
        self._last_end = self.clock()

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
            if aws_unavailable(exc):  # AWS's passing trouble, not the command's: run it later
                raise _HandBack from exc
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
            output.warnings(self._until_written(lease, lambda: sync.up(command.project)))
        except Exception as exc:
            log.exception("could not save the workspace of %s", command.id)
            sync.forget(command.project)
            message = f"the command ran, but its file changes could not all be saved: {exc}"
            output.line(f"berth: {message}")
            return outcome.exit_code or 1, (ErrorCode.WORKSPACE, message)
        return self._verdict(outcome.exit_code, outcome.stopped)

    def _hand_back(
        self, command: Command, access: CommandAccess, receipt: Receipt, output: _Output
    ) -> None:
        """Its process never started: QUEUED again and the message visible again at once (the
        head of its project's group, so the order holds). If the release fails the lease
        runs out and the reconciler ends it ``worker_lost`` — never run twice either way."""
        output.discard()
        try:
            access.repository.release(command.id, self.name, self.clock())
            self.sqs.change_message_visibility(
                QueueUrl=receipt.queue_url, ReceiptHandle=receipt.handle, VisibilityTimeout=0
            )
        except Exception:
            log.exception("could not hand %s back", command.id)
            return
        self._status_frame(command, None, CommandStatus.QUEUED, None)

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
        lease: Lease,
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
        finished = self.clock()
        try:
            self._until_written(lease, lambda: output.save(access.s3, self.bucket, force=True))
            tail = output.tail()
            self._until_written(
                lease,
                lambda: access.repository.finish(
                    command,
                    status,
                    finished,
                    exit_code=exit_code,
                    error=error,
                    tail=tail,
                    worker=self.name,
                ),
            )
        except StaleCommand:
            log.warning("%s was ended elsewhere before its worker could record it", command.id)
            return
        finally:
            output.discard()
        self._status_frame(command, output.next_seq(), status, exit_code)
        self._delete(receipt)
        self.handled.append(command.id)
        self.metrics("CommandDuration", finished - (command.started_at or finished), "Seconds")
        if status == CommandStatus.FAILED:
            self.metrics("CommandFailures", 1, "Count")

    def _until_written(self, lease: Lease, write: Callable[[], T]) -> T:
        """One of the writes that keep what a command did (its file changes, its log, its
        final status). Nothing can give that back, so while AWS is unavailable after
        botocore's own retries (throttled, a 5xx) the write is tried again after a jittered,
        doubling pause — the lease renewed before each try, so no reconciler calls this worker
        lost — for up to ``RESULT_PATIENCE_LEASES`` leases. Then, once the lease is lost, or
        for any other error, it raises."""
        deadline = time.monotonic() + RESULT_PATIENCE_LEASES * self.lease_seconds
        for attempt in itertools.count():
            try:
                return write()
            except Exception as exc:
                if not aws_unavailable(exc) or lease.lost or time.monotonic() >= deadline:
                    raise
                log.warning("could not write what a command did yet; trying again", exc_info=True)
            self.sleep(backoff(attempt, first=RESULT_PAUSE_SECONDS, cap=self.lease_seconds / 3))
            lease.renew()
        raise AssertionError("unreachable")

    # --- output -------------------------------------------------------------------------------

    def _status_frame(
        self, command: Command, seq: int | None, status: CommandStatus, exit_code: int | None
    ) -> None:
        data: dict[str, Any] = {"status": status.value}
        if exit_code is not None:
            data["exit_code"] = exit_code
        self._frame(command, seq, "status", data)

    def _frame(
        self,
        command: Command,
        seq: int | None,
        kind: str,
        data: Any,
        span: tuple[int, int] | None = None,
    ) -> None:
        message = {"type": kind, "command_id": command.id, "seq": seq, "data": data}
        if span is not None:  # the bytes of the log an output frame's text decodes
            message["offset"], message["next_offset"] = span
        try:
            (self._command_publish or self.publish)(
                topic(command.project, command.terminal), message
            )
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
        """Bytes of the log written so far. Each output frame says which bytes of the log its
        text decodes (``offset`` to ``next_offset``), so a late subscriber can join the saved
        log and the live frames without a gap and without counting characters: bytes that are
        not UTF-8 become U+FFFD, which is longer than they are."""

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _held(self) -> int:
        """Bytes of a character cut at a chunk's end, kept for the next frame's text."""
        return len(self.decoder.getstate()[0])

    def write(self, data: bytes) -> None:
        """Output of the command (already written to the log by the runner)."""
        start = self.offset - self._held()
        self.offset += len(data)
        text = self.decoder.decode(data)
        if text:
            span = (start, self.offset - self._held())
            self.worker._frame(self.command, self.next_seq(), "output", text, span)

    def line(self, text: str) -> None:
        """A line of berth's own (a warning), in the output and the log."""
        start = self.offset - self._held()
        cut = self.decoder.decode(b"", final=True)  # a character the command left cut short
        data = (text + "\n").encode()
        if not self.file.closed:
            self.file.write(data)
        self.offset += len(data)
        span = (start, self.offset)
        self.worker._frame(self.command, self.next_seq(), "output", cut + text + "\n", span)

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
