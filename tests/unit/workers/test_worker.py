"""The worker against moto: sync, run, stream, results — and the fault paths: redelivery,
lost leases, SIGTERM, cancel, timeouts, hostile file names and output."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from berth_worker.worker import Worker
from shared.api import status_of
from shared.errors import DomainError
from tests.unit.workers.conftest import (
    ALICE,
    BOB,
    BUCKET,
    Frames,
    MakeWorker,
    queue,
    receive,
    user_queue,
)
from workers.config import WorkersConfig
from workers.models import TAIL_BYTES, CommandStatus, ErrorCode, log_key
from workers.repository import WorkersRepository
from workers.reserve import LEFT, RESERVE_SECONDS, FleetRegistry
from workers.service import CommandService


def objects(aws: boto3.session.Session, prefix: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def in_queue(
    aws: boto3.session.Session, config: WorkersConfig, queue_url: str | None = None
) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url or user_queue(aws),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_a_command_runs_in_the_synced_workspace_and_its_changes_go_back(
    service: CommandService,
    worker: Worker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    frames: Frames,
) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/hello.txt", Body=b"hello\n")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/old.txt", Body=b"bye\n")
    queued = queue(service, ALICE, "demo", "t1", "cat hello.txt; echo made > new.txt; rm old.txt")
    assert queued.status == CommandStatus.QUEUED

    assert worker.run_forever() == 0  # runs the one command, then idles out

    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.exit_code, done.error_code) == (CommandStatus.SUCCEEDED, 0, None)
    assert done.tail == "hello\n"
    assert objects(aws, "workspaces/demo/") == {
        "workspaces/demo/hello.txt": b"hello\n",
        "workspaces/demo/new.txt": b"made\n",
    }
    assert objects(aws, "logs/demo/") == {log_key("demo", queued.id): b"hello\n"}
    assert frames.output() == "hello\n"
    assert in_queue(aws, config) == 0
    assert worker.protection.protected is False  # set while in flight, cleared after


def test_frames_go_to_the_terminal_topic_with_increasing_seq(
    service: CommandService, worker: Worker, frames: Frames
) -> None:
    queued = queue(
        service, ALICE, "demo", "t7", "for i in 1 2 3; do echo line $i; sleep 0.15; done"
    )
    worker.run_forever()
    assert {channel for channel, _ in frames.sent} == {"terminal:demo:t7"}
    sent = frames.of(queued.id)
    assert [m["seq"] for m in sent] == list(range(1, len(sent) + 1))
    assert sent[0] == {
        "type": "status",
        "command_id": queued.id,
        "seq": 1,
        "data": {"status": "RUNNING"},
    }
    assert sent[-1]["data"] == {"status": "SUCCEEDED", "exit_code": 0}
    assert [m["type"] for m in sent].count("output") >= 2  # the sleeps split the output
    assert frames.output() == "line 1\nline 2\nline 3\n"


def test_a_failing_command_is_failed_with_its_exit_code_and_log(
    service: CommandService, worker: Worker, aws: boto3.session.Session
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "echo oops >&2; exit 3")
    worker.run_forever()
    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.exit_code, done.error_code) == (
        CommandStatus.FAILED,
        3,
        ErrorCode.EXIT_STATUS,
    )
    assert objects(aws, "logs/demo/")[log_key("demo", queued.id)] == b"oops\n"


def test_a_command_over_its_timeout_is_stopped(
    service: CommandService, make_worker: MakeWorker
) -> None:
    worker = make_worker(command_timeout=0.5, cancel_grace=0.5)
    queued = queue(service, ALICE, "demo", "t1", "trap '' TERM; sleep 30")  # ignores SIGTERM
    began = time.monotonic()
    worker.run_forever()
    assert time.monotonic() - began < 10  # SIGKILL after the grace period
    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.exit_code, done.error_code) == (
        CommandStatus.FAILED,
        124,
        ErrorCode.TIMED_OUT,
    )


def test_a_duplicate_delivery_does_not_run_twice(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "echo once >> runs.txt")
    message = receive(aws, user_queue(aws))
    worker.handle(message)
    worker.handle(message)  # the same message again
    assert objects(aws, "workspaces/demo/")["workspaces/demo/runs.txt"] == b"once\n"
    assert worker.handled == [queued.id]


def test_a_workspace_aws_cannot_list_now_is_handed_back_and_runs_once_later(
    service: CommandService,
    worker: Worker,
    aws: boto3.session.Session,
    frames: Frames,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by make chaos at 30%: S3 still failing after botocore's retries while a worker
    listed a workspace ended the command FAILED workspace_error before its process started.
    AWS's passing trouble is not the command's: it is QUEUED again and runs once, in order."""
    from botocore.exceptions import ClientError

    from berth_worker.sync import WorkspaceSync

    down, failures = WorkspaceSync.down, [1]

    def listing_fails_once(self: WorkspaceSync, project: str) -> Any:
        if failures:
            failures.pop()
            error = {"Error": {"Code": "InternalError", "Message": "injected"},
                     "ResponseMetadata": {"HTTPStatusCode": 500}}  # fmt: skip
            raise ClientError(error, "ListObjectsV2")
        return down(self, project)

    monkeypatch.setattr(WorkspaceSync, "down", listing_fails_once)
    first = queue(service, ALICE, "demo", "t1", "echo 1 >> order.log")
    second = queue(service, ALICE, "demo", "t1", "echo 2 >> order.log")
    worker.run_forever()
    for queued in (first, second):
        done = service.get(ALICE, "demo", queued.id)
        assert (done.status, done.exit_code) == (CommandStatus.SUCCEEDED, 0), done
    assert objects(aws, "workspaces/demo/")["workspaces/demo/order.log"] == b"1\n2\n"
    statuses = [m["data"]["status"] for m in frames.of(first.id) if m["type"] == "status"]
    assert statuses == ["RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"]


def aws_trouble(operation: str) -> Exception:
    """What botocore raises once its own retries are spent on a 5xx."""
    from botocore.exceptions import ClientError

    error = {"Error": {"Code": "InternalServerError", "Message": "injected"},
             "ResponseMetadata": {"HTTPStatusCode": 500}}  # fmt: skip
    exception: Exception = ClientError(error, operation)
    return exception


def refuse_records(monkeypatch: pytest.MonkeyPatch, *refused: bool) -> None:
    """The API's writes of new commands fail (AWS trouble past retries) where ``refused``
    says so, in order; every later one is written."""
    add, plan = WorkersRepository.add, iter(refused)

    def recording(self: WorkersRepository, *args: Any) -> None:
        if next(plan, False):
            raise aws_trouble("TransactWriteItems")
        add(self, *args)

    monkeypatch.setattr(WorkersRepository, "add", recording)


@pytest.mark.parametrize(
    ("owner", "write", "operation"),
    [("sync", "up", "PutObject"), ("repository", "finish", "TransactWriteItems")],
)
def test_a_command_that_ran_keeps_what_it_did_through_aws_trouble_and_its_lease(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    repository: WorkersRepository,
    monkeypatch: pytest.MonkeyPatch,
    owner: str,
    write: str,
    operation: str,
) -> None:
    """Found by make chaos at 30%: a command ran whole, then saving its file changes (S3
    SlowDown) or its final status failed after botocore's retries, and it ended
    workspace_error with its append lost, or worker_lost. What it did is written again, the
    lease renewed between tries: it ends once, as it ran, and nobody calls it lost meanwhile."""
    from berth_worker.sync import WorkspaceSync

    cls: Any = {"sync": WorkspaceSync, "repository": WorkersRepository}[owner]
    worker = make_worker(lease_seconds=3)
    original, failures = getattr(cls, write), [1, 2, 3]
    leases: list[float] = []

    def fails_three_times(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures:
            failures.pop()
            command = repository.get(queued.id)
            assert command is not None
            assert command.lease_expires_at is not None
            leases.append(command.lease_expires_at)
            raise aws_trouble(operation)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, write, fails_three_times)
    queued = queue(service, ALICE, "demo", "t1", "echo ran >> ran.txt; echo done")
    worker.handle(receive(aws, user_queue(aws)))

    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.exit_code, done.tail) == (CommandStatus.SUCCEEDED, 0, "done\n")
    assert objects(aws, "workspaces/demo/")["workspaces/demo/ran.txt"] == b"ran\n"
    assert objects(aws, "logs/demo/")[log_key("demo", queued.id)] == b"done\n"
    assert leases == sorted(leases) and len(set(leases)) >= 2  # renewed between the tries
    assert in_queue(aws, config) == 0


def test_a_result_aws_keeps_refusing_is_given_up_after_its_patience(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    repository: WorkersRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The patience is bounded: a result AWS never takes leaves the command RUNNING under
    an expiring lease (the reconciler ends it worker_lost), the message not deleted."""
    import berth_worker.worker as worker_module

    monkeypatch.setattr(worker_module, "RESULT_PATIENCE_LEASES", 0.2)
    worker = make_worker(lease_seconds=3)

    def never(self: WorkersRepository, *args: Any, **kwargs: Any) -> None:
        raise aws_trouble("TransactWriteItems")

    monkeypatch.setattr(WorkersRepository, "finish", never)
    queued = queue(service, ALICE, "demo", "t1", "echo once")
    with pytest.raises(Exception, match="InternalServerError"):
        worker.handle(receive(aws, user_queue(aws)))
    left = repository.get(queued.id)
    assert left is not None and left.status == CommandStatus.RUNNING


def test_a_message_ahead_of_its_record_waits_for_it_and_runs_at_once(
    service: CommandService,
    worker: Worker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API sends before it records: a warm worker long-polling the queue may hold the
    message before the record is written. It looks again, briefly, and runs the command."""
    add = WorkersRepository.add
    writing: list[threading.Timer] = []

    def slow_add(self: WorkersRepository, *args: Any) -> None:
        writing.append(threading.Timer(0.3, add, (self, *args)))
        writing[-1].start()

    monkeypatch.setattr(WorkersRepository, "add", slow_add)
    queued = queue(service, ALICE, "demo", "t1", "echo on time")
    worker.handle(receive(aws, user_queue(aws)))
    writing[0].join()
    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.tail) == (CommandStatus.SUCCEEDED, "on time\n")
    assert in_queue(aws, config) == 0


def test_a_message_whose_record_never_came_is_dropped_after_the_grace_and_never_runs(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API sent a command, then could not record it and answered 503. Its message waits
    at the head of its project (hidden, so the order holds) while the API call might still
    record it, then is dropped; the project's next command runs; the 503 one never does."""
    worker = make_worker(record_grace=2)
    refuse_records(monkeypatch, True)
    with pytest.raises(Exception, match="InternalServerError"):  # the API answers 503
        queue(service, ALICE, "demo", "t1", "echo refused >> order.log")
    accepted = queue(service, ALICE, "demo", "t1", "echo accepted >> order.log")
    worker.run_forever()  # waits the orphan out, drops it, runs the next, idles out
    done = service.get(ALICE, "demo", accepted.id)
    assert done.status == CommandStatus.SUCCEEDED
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/order.log": b"accepted\n"}
    assert in_queue(aws, config) == 0


def test_a_retried_key_gets_its_first_command_back_and_it_runs_once(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    """A client whose 202 was lost retries with the same idempotency_key: the same command
    comes back (200), the project's log has one line; another request with the key is 409."""
    first, queued = service.submit(ALICE, "demo", "t1", "echo once >> order.log", "k-1")
    again, queued_again = service.submit(ALICE, "demo", "t1", "echo once >> order.log", "k-1")
    assert (queued, queued_again) == (True, False)
    assert (again.id, again.command, again.status) == (first.id, first.command, first.status)
    other, _ = service.submit(BOB, "theirs", "t1", "echo once >> order.log", "k-1")
    assert other.id != first.id  # a key is the caller's own
    with pytest.raises(DomainError) as refused:
        service.submit(ALICE, "demo", "t1", "echo twice >> order.log", "k-1")
    assert (status_of(refused.value), refused.value.code) == (409, "idempotency_key_reused")
    worker.run_forever()
    assert service.get(ALICE, "demo", first.id).status == CommandStatus.SUCCEEDED
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/order.log": b"once\n"}
    assert in_queue(aws, config) == 0
    later, queued_later = service.submit(ALICE, "demo", "t1", "echo once >> order.log", "k-1")
    assert (later.id, later.status, queued_later) == (first.id, CommandStatus.SUCCEEDED, False)


def test_a_retry_after_a_503_runs_the_command_once_whatever_its_first_message_does(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first attempt's message went out, its record did not (503). A retry with the key
    while that message waits queues the command once (two messages, one run); a retry after
    the worker dropped it is still delivered (never deduplicated away), and runs once."""
    refuse_records(monkeypatch, True, False, True)
    with pytest.raises(Exception, match="InternalServerError"):  # the API answers 503
        service.submit(ALICE, "demo", "t1", "echo early >> order.log", "k-early")
    early, _ = service.submit(ALICE, "demo", "t1", "echo early >> order.log", "k-early")
    make_worker(record_grace=1).run_forever()  # two messages of one command: one run
    assert service.get(ALICE, "demo", early.id).status == CommandStatus.SUCCEEDED

    with pytest.raises(Exception, match="InternalServerError"):
        service.submit(ALICE, "demo", "t1", "echo late >> order.log", "k-late")
    make_worker(record_grace=1).run_forever()  # waits the unrecorded message out, drops it
    late, queued = service.submit(ALICE, "demo", "t1", "echo late >> order.log", "k-late")
    assert queued and late.status == CommandStatus.QUEUED
    make_worker(record_grace=1).run_forever()
    assert service.get(ALICE, "demo", late.id).status == CommandStatus.SUCCEEDED
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/order.log": b"early\nlate\n"}
    assert in_queue(aws, config) == 0


def test_a_redelivered_command_whose_worker_vanished_ends_worker_lost_and_never_reruns(
    service: CommandService,
    worker: Worker,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
    frames: Frames,
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "date >> ran.txt")
    # A worker took it, printed something, then died: its lease ran out.
    repository.claim(queued.id, "ghost", time.time() - 120, 60)
    repository.table.update_item(
        Key={"pk": f"CMD#{queued.id}"},
        UpdateExpression="SET tail = :t",
        ExpressionAttributeValues={":t": "half of the output\n"},
    )
    worker.handle(receive(aws, user_queue(aws)))

    lost = service.get(ALICE, "demo", queued.id)
    assert (lost.status, lost.error_code) == (CommandStatus.FAILED, ErrorCode.WORKER_LOST)
    assert lost.tail == "half of the output\n"  # the output it had is kept
    assert "workspaces/demo/ran.txt" not in objects(aws, "workspaces/demo/")  # not run again
    assert in_queue(aws, config) == 0
    assert frames.of(queued.id)[-1]["data"] == {"status": "FAILED"}
    # the user's count was freed: five more fit under the limit of five
    for n in range(5):
        queue(service, ALICE, "demo", "t1", f"echo {n}")


def test_a_redelivered_command_whose_worker_is_alive_is_left_to_it(
    service: CommandService,
    worker: Worker,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "echo hi")
    repository.claim(queued.id, "alive", time.time(), 60)
    worker.handle(receive(aws, user_queue(aws)))
    still = service.get(ALICE, "demo", queued.id)
    assert (still.status, still.worker) == (CommandStatus.RUNNING, "alive")
    assert in_queue(aws, config) == 1  # not deleted: hidden until that lease would end
    assert aws.client("sqs").receive_message(QueueUrl=user_queue(aws)).get("Messages") is None


def test_the_heartbeat_keeps_the_lease_and_the_message(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    repository: WorkersRepository,
) -> None:
    worker = make_worker(lease_seconds=1.5)
    queued = queue(service, ALICE, "demo", "t1", "echo started; sleep 2.5; echo done")
    message = receive(aws, user_queue(aws), visibility=2)
    leases: list[float] = []
    stolen: list[object] = []

    def watch() -> None:
        for _ in range(10):
            time.sleep(0.4)
            command = repository.get(queued.id)
            if command and command.lease_expires_at:
                leases.append(command.lease_expires_at)
            # nobody else can take the message while the lease is kept alive
            stolen.extend(
                aws.client("sqs").receive_message(QueueUrl=user_queue(aws)).get("Messages", [])
            )

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker.handle(message)
    watcher.join()
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert len(set(leases)) >= 3  # renewed every half second
    assert stolen == []


def test_a_renewal_aws_refused_is_tried_again_at_the_next_tick_not_an_interval_later() -> None:
    """Found by make chaos at 30%: a renewal that failed waited a whole interval (a third of
    the lease) for the next, so three failures in a row lost a live worker its command."""
    from berth_worker.lease import Lease

    calls: list[float] = []
    renewed = threading.Event()

    class Flaky:
        def renew(self, *_: Any) -> Any:
            calls.append(time.monotonic())
            if len(calls) <= 3:
                raise aws_trouble("UpdateItem")
            renewed.set()
            return type("Record", (), {"cancel_requested": False})()

    class Queue:
        def change_message_visibility(self, **_: Any) -> None:
            pass

    lease = Lease(
        sqs=Queue(),
        queue_url="q",
        receipt="r",
        repository=Flaky(),  # type: ignore[arg-type]
        command_id="c",
        worker="w",
        lease_seconds=30,  # renewals due every 10 s
        check_seconds=0.05,
    )
    assert lease.renew() is True  # refused by AWS: still held, due again at the next tick
    with lease:
        assert renewed.wait(timeout=5)
    assert (lease.missed, lease.renewals, lease.lost) == (3, 1, False)
    assert calls[-1] - calls[0] < lease.interval  # four tries inside one interval


def test_a_lease_lost_while_running_stops_the_command_and_writes_nothing(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    repository: WorkersRepository,
) -> None:
    worker = make_worker(lease_seconds=1.5)
    queued = queue(service, ALICE, "demo", "t1", "echo before > f.txt; sleep 20")

    def declare_lost() -> None:  # the reconciler, believing the worker gone
        time.sleep(1)
        command = repository.get(queued.id)
        assert command is not None
        repository.finish(
            command, CommandStatus.FAILED, time.time(), error=(ErrorCode.WORKER_LOST, "x")
        )

    threading.Thread(target=declare_lost).start()
    began = time.monotonic()
    worker.handle(receive(aws, user_queue(aws)))
    assert time.monotonic() - began < 10
    ended = service.get(ALICE, "demo", queued.id)
    assert (ended.status, ended.error_code) == (CommandStatus.FAILED, ErrorCode.WORKER_LOST)
    assert objects(aws, "workspaces/demo/") == {}  # its files are no longer its to save
    assert not (worker.workdir / "demo").exists()  # nor kept for the next command


def test_sigterm_ends_an_unfinished_command_worker_lost_keeping_its_files(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
) -> None:
    worker = make_worker(stop_grace=1.5, cancel_grace=0.5)
    queued = queue(service, ALICE, "demo", "t1", "echo partial > f.txt; sleep 30")
    threading.Timer(0.3, worker.stop).start()  # SIGTERM arrives while the command runs
    worker.handle(receive(aws, user_queue(aws)))
    ended = service.get(ALICE, "demo", queued.id)
    assert (ended.status, ended.error_code) == (CommandStatus.FAILED, ErrorCode.WORKER_LOST)
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/f.txt": b"partial\n"}
    assert in_queue(aws, config) == 0  # never handed back: a started command never reruns


def test_sigterm_lets_a_short_command_finish(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "sleep 0.5; echo done")
    threading.Timer(0.1, worker.stop).start()
    worker.handle(receive(aws, user_queue(aws)))
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert in_queue(aws, config) == 0


def test_cancelling_a_running_command_stops_it_and_keeps_its_changes(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "echo kept > f.txt; sleep 30")

    def cancel_once_it_runs() -> None:
        while service.get(ALICE, "demo", queued.id).status != CommandStatus.RUNNING:
            time.sleep(0.05)
        time.sleep(0.3)  # it has written its file by now
        service.cancel(ALICE, "demo", queued.id)

    threading.Thread(target=cancel_once_it_runs).start()
    began = time.monotonic()
    worker.handle(receive(aws, user_queue(aws)))
    assert time.monotonic() - began < 10
    ended = service.get(ALICE, "demo", queued.id)
    assert (ended.status, ended.exit_code, ended.error_code) == (
        CommandStatus.CANCELLED,
        143,  # SIGTERM
        ErrorCode.CANCELLED,
    )
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/f.txt": b"kept\n"}


def test_a_command_cancelled_while_queued_never_runs(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "echo ran > ran.txt")
    cancelled = service.cancel(ALICE, "demo", queued.id)
    assert cancelled.status == CommandStatus.CANCELLED
    worker.run_forever()
    assert objects(aws, "workspaces/demo/") == {}
    assert in_queue(aws, config) == 0
    assert service.get(ALICE, "demo", queued.id).started_at is None


def test_commands_of_a_project_run_one_at_a_time_in_order_across_workers(
    service: CommandService, make_worker: MakeWorker, aws: boto3.session.Session
) -> None:
    accepted = [
        queue(service, ALICE, "demo", "t1", f"echo {n} >> counter.txt; sleep 0.05")
        for n in range(1, 6)
    ]
    workers = [make_worker(keep_warm_seconds=2) for _ in range(3)]
    threads = [threading.Thread(target=w.run_forever) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    counter = objects(aws, "workspaces/demo/")["workspaces/demo/counter.txt"].decode().split()
    by_sequence = sorted(accepted, key=lambda c: int(c.sequence or 0))
    assert counter == [c.command.split()[1] for c in by_sequence] == ["1", "2", "3", "4", "5"]
    statuses = {service.get(ALICE, "demo", c.id).status for c in accepted}
    assert statuses == {CommandStatus.SUCCEEDED}
    assert sum(len(w.handled) for w in workers) == 5


def test_projects_run_in_parallel(
    service: CommandService, make_worker: MakeWorker, aws: boto3.session.Session
) -> None:
    slow = queue(service, ALICE, "slow", "t1", "sleep 8")
    quick = queue(service, ALICE, "quick", "t1", "echo hi")
    workers = [make_worker(keep_warm_seconds=1) for _ in range(2)]
    threads = [threading.Thread(target=w.run_forever) for w in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        if service.get(ALICE, "quick", quick.id).status == CommandStatus.SUCCEEDED:
            break
        time.sleep(0.1)
    assert service.get(ALICE, "quick", quick.id).status == CommandStatus.SUCCEEDED
    assert service.get(ALICE, "slow", slow.id).status == CommandStatus.RUNNING
    service.cancel(ALICE, "slow", slow.id)
    for thread in threads:
        thread.join(timeout=30)


def test_names_s3_cannot_hold_are_skipped_with_a_warning_and_the_next_command_runs(
    service: CommandService, worker: Worker, aws: boto3.session.Session, frames: Frames
) -> None:
    bad = queue(
        service, ALICE, "demo", "t1", "touch $'bad\\xffname.txt' good.txt; ln -s /etc/passwd link"
    )
    after = queue(service, ALICE, "demo", "t1", "ls")
    worker.run_forever()
    done = service.get(ALICE, "demo", bad.id)
    assert done.status == CommandStatus.SUCCEEDED
    assert "berth: skipped bad\\xffname.txt: the name is not valid UTF-8" in frames.output(bad.id)
    assert "berth: skipped link: a symbolic link" in (done.tail or "")
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/good.txt": b""}
    assert service.get(ALICE, "demo", after.id).status == CommandStatus.SUCCEEDED
    assert frames.output(after.id) == "good.txt\n"  # the next worker copy mirrors the bucket


def test_huge_output_on_one_line_streams_in_frames_and_is_logged_whole(
    service: CommandService, worker: Worker, aws: boto3.session.Session, frames: Frames
) -> None:
    size = 3_000_000
    queued = queue(service, ALICE, "demo", "t1", f"head -c {size} /dev/zero | tr '\\0' a")
    worker.run_forever()
    done = service.get(ALICE, "demo", queued.id)
    assert done.status == CommandStatus.SUCCEEDED
    assert len(objects(aws, "logs/demo/")[log_key("demo", queued.id)]) == size
    outputs = [m["data"] for m in frames.of(queued.id) if m["type"] == "output"]
    assert len(outputs) > 1 and max(len(o) for o in outputs) <= 32 * 1024
    assert "".join(outputs) == "a" * size
    assert done.tail == "a" * TAIL_BYTES


def test_binary_output_is_logged_as_is(
    service: CommandService, worker: Worker, aws: boto3.session.Session, frames: Frames
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "printf '\\xff\\xfe\\x00ok\\xe2\\x82'")
    worker.run_forever()
    assert objects(aws, "logs/demo/")[log_key("demo", queued.id)] == b"\xff\xfe\x00ok\xe2\x82"
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert frames.output(queued.id).startswith("\ufffd\ufffd\x00ok")


def assert_frames_tile(log: bytes, outputs: list[dict[str, Any]]) -> None:
    """Output frames name the bytes of the log their text decodes, one after another."""
    assert outputs[0]["offset"] == 0 and outputs[-1]["next_offset"] == len(log)
    for before, after in itertools.pairwise(outputs):
        assert before["next_offset"] == after["offset"]
    for frame in outputs:
        decoded = log[frame["offset"] : frame["next_offset"]].decode("utf-8", "replace")
        assert frame["data"] == decoded


def test_output_frames_name_the_log_bytes_of_their_text_whatever_the_bytes(
    service: CommandService, worker: Worker, aws: boto3.session.Session, frames: Frames
) -> None:
    text = "printf '\\xff ok \\xe2\\x82'; sleep 0.3; printf '\\xac \\xfe\\xfe end\\n'"
    queued = queue(service, ALICE, "demo", "t1", text)
    worker.run_forever()
    log = objects(aws, "logs/demo/")[log_key("demo", queued.id)]
    assert log == b"\xff ok \xe2\x82\xac \xfe\xfe end\n"
    assert_frames_tile(log, [m for m in frames.of(queued.id) if m["type"] == "output"])
    assert frames.output(queued.id) == "\ufffd ok \u20ac \ufffd\ufffd end\n"


def test_a_character_cut_between_chunks_goes_whole_with_the_next_frame(
    service: CommandService, worker: Worker, frames: Frames, tmp_path: Path
) -> None:
    from berth_worker.worker import _Output

    command = queue(service, ALICE, "demo", "t1", "true")
    output = _Output(worker, command, tmp_path / "command.log")
    chunks = [b"\xff ok \xe2\x82", b"\xac", b" \xf0\x9f", b"\x98\x80 \xe2"]
    for chunk in chunks:
        output.file.write(chunk)  # as the runner does before it emits a chunk
        output.write(chunk)
    output.line("berth: a warning")  # the command left a character cut short
    output.close()
    sent = [m for m in frames.of(command.id) if m["type"] == "output"]
    assert [(m["offset"], m["next_offset"], m["data"]) for m in sent] == [
        (0, 5, "\ufffd ok "),
        (5, 8, "\u20ac"),
        (8, 9, " "),
        (9, 14, "\U0001f600 "),
        (14, 32, "\ufffdberth: a warning\n"),
    ]
    assert_frames_tile((tmp_path / "command.log").read_bytes(), sent)


def test_the_saved_log_is_read_in_whole_characters_by_the_bytes_it_holds(
    service: CommandService, worker: Worker, aws: boto3.session.Session
) -> None:
    running = queue(service, ALICE, "demo", "t1", "sleep 60")
    key = log_key("demo", running.id)
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"\xff ok \xe2\x82")
    piece = service.output(ALICE, "demo", running.id, 0)
    assert (piece.data, piece.next_offset, piece.complete) == ("\ufffd ok ", 5, False)
    assert service.output(ALICE, "demo", running.id, 5).data == ""  # until the rest is saved
    ended = queue(service, ALICE, "demo", "t1", "printf 'ok\\xe2\\x82'")
    service.cancel(ALICE, "demo", running.id)
    worker.run_forever()
    piece = service.output(ALICE, "demo", ended.id, 1)
    assert (piece.data, piece.next_offset, piece.complete) == ("k\ufffd", 4, True)


def test_only_changed_objects_are_downloaded_and_local_leftovers_removed(
    service: CommandService, worker: Worker, aws: boto3.session.Session
) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/a.txt", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/b.txt", Body=b"b")
    sync = worker.workspace_sync(s3)
    assert sync.down("demo").fetched == 2
    assert sync.down("demo").fetched == 0
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/b.txt", Body=b"b2")
    stray = sync.directory("demo") / "stray.txt"  # left by a command that never synced up
    stray.write_text("x")
    (sync.directory("demo") / "a.txt").write_text("changed locally, not in the bucket")
    assert sync.down("demo").fetched == 2
    assert not stray.exists()
    assert (sync.directory("demo") / "a.txt").read_text() == "a"


def test_object_keys_cannot_escape_the_workspace_nor_follow_links(
    worker: Worker, aws: boto3.session.Session, tmp_path: Path
) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/../../evil", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/x.txt", Body=b"from the bucket")
    target = tmp_path / "outside.txt"
    target.write_text("untouched")
    sync = worker.workspace_sync(s3)
    sync.directory("demo").mkdir(parents=True)
    (sync.directory("demo") / "x.txt").symlink_to(target)  # planted by an earlier command
    report = sync.down("demo")
    assert any("not a safe path" in w for w in report.warnings)
    assert target.read_text() == "untouched"
    assert (sync.directory("demo") / "x.txt").read_text() == "from the bucket"
    assert not (sync.directory("demo") / "x.txt").is_symlink()
    assert not (tmp_path / "evil").exists()


def test_a_message_that_is_not_a_command_is_dropped(
    worker: Worker, aws: boto3.session.Session, config: WorkersConfig, service: CommandService
) -> None:
    aws.client("sqs").send_message(
        QueueUrl=service.queue_of(ALICE),
        MessageBody=json.dumps({"hello": 1}),
        MessageGroupId="x",
        MessageDeduplicationId="x",
    )
    worker.handle(receive(aws, user_queue(aws)))
    assert in_queue(aws, config) == 0


def test_each_command_runs_on_credentials_vended_for_it_and_its_user(
    service: CommandService, aws: boto3.session.Session, make_worker: MakeWorker
) -> None:
    """The worker asks the credentials route for its user's queue, then once per command
    with the command's id, and uses exactly what it is given."""
    from berth_worker.access import AccessBroker

    asked: list[str | None] = []
    broker = AccessBroker(aws, "workers", "http://credentials.invalid/workers/credentials")

    def vend(command_id: str | None) -> dict[str, object]:
        asked.append(command_id)
        return {
            "user": ALICE,
            "queue_name": "q",
            "credentials": {
                "access_key_id": f"AKIA{len(asked)}",
                "secret_access_key": "secret",
                "session_token": "token",
                "expiration": "2099-01-01T00:00:00+00:00",
            },
        }

    broker.vend = vend  # type: ignore[method-assign]
    queued = queue(service, ALICE, "demo", "t1", "echo scoped")
    worker = make_worker(access=broker)
    worker.run_forever()
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert asked == [None, queued.id]  # its user's queue, then that command
    session = broker._vended(ALICE, queued.id)
    assert session.get_credentials().get_frozen_credentials().access_key == "AKIA3"


def test_credentials_for_another_user_are_refused(aws: boto3.session.Session) -> None:
    from berth_worker.access import AccessBroker, NotThisUser

    broker = AccessBroker(aws, "workers", "http://credentials.invalid/workers/credentials")
    broker.vend = lambda command_id: {  # type: ignore[method-assign]
        "user": BOB,
        "queue_name": "q",
        "credentials": {
            "access_key_id": "A",
            "secret_access_key": "s",
            "session_token": "t",
            "expiration": "2099-01-01T00:00:00+00:00",
        },
    }
    with pytest.raises(NotThisUser):
        broker.queue_client(ALICE)


def _in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    return thread


def _handled_within(worker: Worker, command_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while command_id not in worker.handled and time.monotonic() < deadline:
        time.sleep(0.05)
    return command_id in worker.handled


def test_a_bound_worker_takes_only_its_users_commands_and_leaves_after_keep_warm(
    service: CommandService, make_worker: MakeWorker
) -> None:
    mine = [queue(service, ALICE, p, "t1", "echo mine") for p in ("a", "b")]
    theirs = queue(service, BOB, "c", "t1", "echo theirs")
    worker = make_worker(keep_warm_seconds=1)
    began = time.monotonic()
    worker.run_forever()
    assert sorted(worker.handled) == sorted(c.id for c in mine)
    assert service.get(BOB, "c", theirs.id).status == CommandStatus.QUEUED  # never seen
    assert time.monotonic() - began < 10


def test_a_message_of_another_user_in_its_queue_is_never_run(
    service: CommandService, make_worker: MakeWorker, aws: boto3.session.Session
) -> None:
    """Users' queues hold only their own commands; a forged one is dropped, not run."""
    theirs = queue(service, BOB, "c", "t1", "echo theirs > planted.txt")
    aws.client("sqs").send_message(
        QueueUrl=service.queue_of(ALICE),
        MessageBody=json.dumps({"command_id": theirs.id, "project": "c", "user": BOB}),
        MessageGroupId="c",
        MessageDeduplicationId="forged",
    )
    worker = make_worker()
    worker.run_forever()
    assert worker.handled == []
    assert service.get(BOB, "c", theirs.id).status == CommandStatus.QUEUED
    assert objects(aws, "workspaces/c/") == {}


def test_an_unbound_worker_is_bound_once_and_serves_only_that_user(
    service: CommandService, make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(1, time.time())  # it stays in the reserve until bound
    worker = make_worker(user=None, fleet=registry, keep_warm_seconds=2)
    thread = _in_thread(worker)
    mine = queue(service, ALICE, "a", "t1", "echo hi")
    theirs = queue(service, BOB, "b", "t1", "echo hi")
    deadline = time.monotonic() + 10
    while worker.name not in registry.view(time.time()).idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registry.bind(worker.name, ALICE, time.time())
    assert not registry.bind(worker.name, BOB, time.time())  # one user, for its whole life
    assert _handled_within(worker, mine.id, 15)
    thread.join(timeout=20)
    assert not thread.is_alive()  # left after keep_warm_seconds: never back in the reserve
    assert worker.handled == [mine.id]
    assert service.get(BOB, "b", theirs.id).status == CommandStatus.QUEUED
    view = registry.view(time.time())
    assert worker.name not in view.idle and worker.name not in view.bound
    assert registry.binding_of(worker.name) == ALICE


def test_an_unbound_worker_beyond_the_reserve_leaves_with_a_tombstone(
    make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    registry = FleetRegistry(repository.table)
    worker = make_worker(user=None, fleet=registry, idle_seconds=1)
    began = time.monotonic()
    assert worker.run_forever() == 0
    assert time.monotonic() - began < 5
    assert registry.binding_of(worker.name) == LEFT
    assert not registry.bind(worker.name, ALICE, time.time())  # too late: it left
    assert registry.view(time.time()).idle == {}


def test_a_worker_bound_as_it_leaves_serves_that_user(
    service: CommandService,
    make_worker: MakeWorker,
    repository: WorkersRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = FleetRegistry(repository.table)
    queued = queue(service, ALICE, "a", "t1", "echo bound at the last moment")
    worker = make_worker(user=None, fleet=registry, idle_seconds=1, keep_warm_seconds=1)
    leave = registry.leave_unbound

    def bound_first(name: str, now: float) -> bool:
        assert registry.bind(name, ALICE, now)  # the scaler wins the race
        return leave(name, now)

    monkeypatch.setattr(registry, "leave_unbound", bound_first)
    worker.run_forever()
    assert worker.handled == [queued.id]


def test_idle_reserve_workers_shrink_to_the_reserve_and_to_zero_once_it_is_gone(
    make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(1, time.time())
    workers = [make_worker(user=None, idle_seconds=1, fleet=registry) for _ in range(3)]
    threads = [_in_thread(worker) for worker in workers]
    deadline = time.monotonic() + 15
    while sum(t.is_alive() for t in threads) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # a few more checks: the last one stays for the reserve
    assert sum(t.is_alive() for t in threads) == 1
    (staying,) = [w for w, t in zip(workers, threads, strict=True) if t.is_alive()]
    assert list(registry.view(time.time()).idle) == [staying.name]
    registry.publish_reserve(0, time.time())  # nothing active any more
    for thread in threads:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


def test_a_stale_reserve_holds_no_worker(
    make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    """A scaler that stopped republishing cannot keep workers (and their cost) forever."""
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(5, time.time() - RESERVE_SECONDS - 1)
    worker = make_worker(user=None, idle_seconds=1, fleet=registry)
    began = time.monotonic()
    worker.run_forever()
    assert time.monotonic() - began < 4


def test_a_bound_worker_stops_counting_itself_before_its_last_look(
    service: CommandService,
    make_worker: MakeWorker,
    repository: WorkersRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command queued while it was about to leave is taken, not left to wait."""
    registry = FleetRegistry(repository.table)
    service.queue_of(ALICE)  # made on alice's first command
    worker = make_worker(fleet=registry, keep_warm_seconds=1)
    poll = worker._poll
    late: list[str] = []

    def poll_then_queue(wait: int) -> object:
        found = poll(wait)
        if found is None and not late and worker.name not in registry.view(time.time()).bound:
            late.append(queue(service, ALICE, "a", "t1", "echo late").id)  # after "gone"
            return poll(1)
        return found

    monkeypatch.setattr(worker, "_poll", poll_then_queue)
    worker.run_forever()
    assert late and worker.handled == late


def test_a_leaving_worker_clears_its_entry_through_a_passing_fault(
    make_worker: MakeWorker, repository: WorkersRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left behind, the entry would count as a worker for a minute."""
    registry = FleetRegistry(repository.table)
    real_gone = registry.gone
    calls: list[str] = []

    def flaky_gone(worker: str) -> None:
        calls.append(worker)
        if len(calls) == 1:
            raise RuntimeError("a passing fault")
        real_gone(worker)

    monkeypatch.setattr(registry, "gone", flaky_gone)
    worker = make_worker(user=None, idle_seconds=1, fleet=registry)
    assert worker.run_forever() == 0
    assert len(calls) == 2
    assert registry.view(time.time()).idle == {}


def test_a_worker_whose_user_queues_while_it_runs_leaves_after_idle_seconds(
    service: CommandService, make_worker: MakeWorker
) -> None:
    """A script sends commands behind each other; a person reads, then types: only the
    person's worker waits keep_warm_seconds for the next one."""
    for n in range(2):
        queue(service, ALICE, "build", "t1", f"echo {n}")
    scripted = make_worker(idle_seconds=1, keep_warm_seconds=30)
    began = time.monotonic()
    scripted.run_forever()
    assert scripted.scripted and len(scripted.handled) == 2
    assert time.monotonic() - began < 15

    queue(service, ALICE, "typing", "t1", "echo one")
    person = make_worker(idle_seconds=1, keep_warm_seconds=10)
    thread = _in_thread(person)
    time.sleep(3)  # reading, longer than idle_seconds
    follow_up = queue(service, ALICE, "typing", "t1", "echo two")
    assert _handled_within(person, follow_up.id, 10)
    assert not person.scripted
    thread.join(timeout=30)


def test_a_throttled_credentials_route_is_asked_again_with_backoff(
    aws: boto3.session.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route shares the API stage's throttle: a 429 or 503 is retried, a 404 is not."""
    import io
    import urllib.error
    import urllib.request

    from berth_worker.access import AccessBroker

    answers: list[int] = [429, 503, 200]
    seen: list[str] = []

    def urlopen(request: urllib.request.Request, timeout: float) -> object:
        seen.append(request.get_header("Authorization") or "")
        status = answers.pop(0)
        if status != 200:
            raise urllib.error.HTTPError(request.full_url, status, "no", None, None)  # type: ignore[arg-type]
        return io.BytesIO(json.dumps({"user": ALICE}).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    broker = AccessBroker(aws, "workers", "http://127.0.0.1:9/workers/credentials")
    slept: list[float] = []
    broker.sleep = slept.append
    assert broker.vend(None) == {"user": ALICE}
    assert len(seen) == 3 and all(a.startswith("AWS4-HMAC-SHA256 ") for a in seen)  # signed
    assert len(slept) == 2 and slept[0] < slept[1] <= 4.0
    answers[:] = [404]
    with pytest.raises(urllib.error.HTTPError):
        broker.vend("cmd_" + "0" * 28)
    assert len(slept) == 2  # not retried
