"""The worker against moto: sync, run, stream, results — and the fault paths: redelivery,
lost leases, SIGTERM, cancel, timeouts, hostile file names and output."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import boto3
import pytest

from berth_worker.worker import HELD_POLL_SECONDS, Worker
from tests.unit.workers.conftest import (
    ALICE,
    BUCKET,
    KEEP_WARM_SECONDS,
    Frames,
    MakeWorker,
    receive,
)
from workers.config import WorkersConfig
from workers.models import TAIL_BYTES, CommandStatus, ErrorCode, log_key
from workers.repository import WorkersRepository
from workers.reserve import RESERVE_SECONDS, FleetRegistry
from workers.scaling import Lane
from workers.service import CommandService


def objects(aws: boto3.session.Session, prefix: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def in_queue(
    aws: boto3.session.Session, config: WorkersConfig, queue_url: str | None = None
) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url or config.queue_url,
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
    queued = service.submit(ALICE, "demo", "t1", "cat hello.txt; echo made > new.txt; rm old.txt")
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
    queued = service.submit(
        ALICE, "demo", "t7", "for i in 1 2 3; do echo line $i; sleep 0.15; done"
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
    queued = service.submit(ALICE, "demo", "t1", "echo oops >&2; exit 3")
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
    queued = service.submit(ALICE, "demo", "t1", "trap '' TERM; sleep 30")  # ignores SIGTERM
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
    queued = service.submit(ALICE, "demo", "t1", "echo once >> runs.txt")
    message = receive(aws, config.queue_url)
    worker.handle(message)
    worker.handle(message)  # the same message again
    assert objects(aws, "workspaces/demo/")["workspaces/demo/runs.txt"] == b"once\n"
    assert worker.handled == [queued.id]


def test_a_redelivered_command_whose_worker_vanished_ends_worker_lost_and_never_reruns(
    service: CommandService,
    worker: Worker,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
    frames: Frames,
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "date >> ran.txt")
    # A worker took it, printed something, then died: its lease ran out.
    repository.claim(queued.id, "ghost", time.time() - 120, 60)
    repository.table.update_item(
        Key={"pk": f"CMD#{queued.id}"},
        UpdateExpression="SET tail = :t",
        ExpressionAttributeValues={":t": "half of the output\n"},
    )
    worker.handle(receive(aws, config.queue_url))

    lost = service.get(ALICE, "demo", queued.id)
    assert (lost.status, lost.error_code) == (CommandStatus.FAILED, ErrorCode.WORKER_LOST)
    assert lost.tail == "half of the output\n"  # the output it had is kept
    assert "workspaces/demo/ran.txt" not in objects(aws, "workspaces/demo/")  # not run again
    assert in_queue(aws, config) == 0
    assert frames.of(queued.id)[-1]["data"] == {"status": "FAILED"}
    # the user's count was freed: five more fit under the limit of five
    for n in range(5):
        service.submit(ALICE, "demo", "t1", f"echo {n}")


def test_a_redelivered_command_whose_worker_is_alive_is_left_to_it(
    service: CommandService,
    worker: Worker,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "echo hi")
    repository.claim(queued.id, "alive", time.time(), 60)
    worker.handle(receive(aws, config.queue_url))
    still = service.get(ALICE, "demo", queued.id)
    assert (still.status, still.worker) == (CommandStatus.RUNNING, "alive")
    assert in_queue(aws, config) == 1  # not deleted: hidden until that lease would end
    assert aws.client("sqs").receive_message(QueueUrl=config.queue_url).get("Messages") is None


def test_the_heartbeat_keeps_the_lease_and_the_message(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    repository: WorkersRepository,
) -> None:
    worker = make_worker(lease_seconds=1.5)
    queued = service.submit(ALICE, "demo", "t1", "echo started; sleep 2.5; echo done")
    message = receive(aws, config.queue_url, visibility=2)
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
                aws.client("sqs").receive_message(QueueUrl=config.queue_url).get("Messages", [])
            )

    watcher = threading.Thread(target=watch)
    watcher.start()
    worker.handle(message)
    watcher.join()
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert len(set(leases)) >= 3  # renewed every half second
    assert stolen == []


def test_a_lease_lost_while_running_stops_the_command_and_writes_nothing(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    repository: WorkersRepository,
) -> None:
    worker = make_worker(lease_seconds=1.5)
    queued = service.submit(ALICE, "demo", "t1", "echo before > f.txt; sleep 20")

    def declare_lost() -> None:  # the reconciler, believing the worker gone
        time.sleep(1)
        command = repository.get(queued.id)
        assert command is not None
        repository.finish(
            command, CommandStatus.FAILED, time.time(), error=(ErrorCode.WORKER_LOST, "x")
        )

    threading.Thread(target=declare_lost).start()
    began = time.monotonic()
    worker.handle(receive(aws, config.queue_url))
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
    queued = service.submit(ALICE, "demo", "t1", "echo partial > f.txt; sleep 30")
    threading.Timer(0.3, worker.stop).start()  # SIGTERM arrives while the command runs
    worker.handle(receive(aws, config.queue_url))
    ended = service.get(ALICE, "demo", queued.id)
    assert (ended.status, ended.error_code) == (CommandStatus.FAILED, ErrorCode.WORKER_LOST)
    assert objects(aws, "workspaces/demo/") == {"workspaces/demo/f.txt": b"partial\n"}
    assert in_queue(aws, config) == 0  # never handed back: a started command never reruns


def test_sigterm_lets_a_short_command_finish(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "sleep 0.5; echo done")
    threading.Timer(0.1, worker.stop).start()
    worker.handle(receive(aws, config.queue_url))
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert in_queue(aws, config) == 0


def test_cancelling_a_running_command_stops_it_and_keeps_its_changes(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "echo kept > f.txt; sleep 30")

    def cancel_once_it_runs() -> None:
        while service.get(ALICE, "demo", queued.id).status != CommandStatus.RUNNING:
            time.sleep(0.05)
        time.sleep(0.3)  # it has written its file by now
        service.cancel(ALICE, "demo", queued.id)

    threading.Thread(target=cancel_once_it_runs).start()
    began = time.monotonic()
    worker.handle(receive(aws, config.queue_url))
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
    queued = service.submit(ALICE, "demo", "t1", "echo ran > ran.txt")
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
        service.submit(ALICE, "demo", "t1", f"echo {n} >> counter.txt; sleep 0.05")
        for n in range(1, 6)
    ]
    workers = [make_worker(idle_seconds=2) for _ in range(3)]
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
    slow = service.submit(ALICE, "slow", "t1", "sleep 8")
    quick = service.submit(ALICE, "quick", "t1", "echo hi")
    workers = [make_worker(idle_seconds=1) for _ in range(2)]
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
    bad = service.submit(
        ALICE, "demo", "t1", "touch $'bad\\xffname.txt' good.txt; ln -s /etc/passwd link"
    )
    after = service.submit(ALICE, "demo", "t1", "ls")
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
    queued = service.submit(ALICE, "demo", "t1", f"head -c {size} /dev/zero | tr '\\0' a")
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
    queued = service.submit(ALICE, "demo", "t1", "printf '\\xff\\xfe\\x00ok\\xe2\\x82'")
    worker.run_forever()
    assert objects(aws, "logs/demo/")[log_key("demo", queued.id)] == b"\xff\xfe\x00ok\xe2\x82"
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert frames.output(queued.id).startswith("\ufffd\ufffd\x00ok")


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
    worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    aws.client("sqs").send_message(
        QueueUrl=config.queue_url,
        MessageBody=json.dumps({"hello": 1}),
        MessageGroupId="x",
        MessageDeduplicationId="x",
    )
    worker.handle(receive(aws, config.queue_url))
    assert in_queue(aws, config) == 0


def test_each_command_runs_on_credentials_tagged_with_its_project_command_and_user(
    service: CommandService, aws: boto3.session.Session, make_worker: MakeWorker
) -> None:
    from berth_worker.access import AccessBroker

    role = aws.client("iam").create_role(
        RoleName="command", AssumeRolePolicyDocument=json.dumps({"Statement": []})
    )["Role"]["Arn"]
    broker = AccessBroker(aws, "workers", role)
    calls: list[dict[str, object]] = []
    sts = broker.sts

    class Recording:
        def assume_role(self, **kwargs: object) -> object:
            calls.append(kwargs)
            return sts.assume_role(**kwargs)

    broker.sts = Recording()
    queued = service.submit(ALICE, "demo", "t1", "echo scoped")
    worker = make_worker(access=broker)
    worker.run_forever()
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    (call,) = calls
    assert call["RoleArn"] == role
    assert call["RoleSessionName"] == queued.id
    assert call["Tags"] == [
        {"Key": "project", "Value": "demo"},
        {"Key": "command", "Value": queued.id},
        {"Key": "user", "Value": ALICE},
    ]


def _in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    return thread


def test_an_idle_worker_leaves_after_idle_seconds_when_nothing_is_warm(
    make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    registry = FleetRegistry(repository.table)
    worker = make_worker(idle_seconds=1, fleet=registry)
    began = time.monotonic()
    assert worker.run_forever() == 0
    assert time.monotonic() - began < 4
    assert registry.view(time.time()).idle == {}  # it said it left


def test_idle_workers_shrink_to_the_reserve_and_to_zero_once_it_is_gone(
    make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(1, 0, time.time())  # one person is likely typing
    workers = [make_worker(idle_seconds=1, fleet=registry) for _ in range(3)]
    threads = [_in_thread(worker) for worker in workers]
    deadline = time.monotonic() + 15
    while sum(t.is_alive() for t in threads) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # a few more checks: the last one stays for the reserve
    assert sum(t.is_alive() for t in threads) == 1
    (staying,) = [w for w, t in zip(workers, threads, strict=True) if t.is_alive()]
    assert list(registry.view(time.time()).idle) == [staying.name]
    registry.publish_reserve(0, 0, time.time())  # nobody warm any more
    for thread in threads:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


def test_a_stale_reserve_holds_no_worker(
    make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    """A scaler that stopped republishing cannot keep workers (and their cost) forever."""
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(5, 0, time.time() - RESERVE_SECONDS - 1)
    worker = make_worker(idle_seconds=1, fleet=registry)
    began = time.monotonic()
    worker.run_forever()
    assert time.monotonic() - began < 4


def test_a_reserve_worker_takes_any_projects_command_at_once(
    service: CommandService, make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(1, 0, time.time())
    worker = make_worker(idle_seconds=1, fleet=registry)
    thread = _in_thread(worker)
    time.sleep(2.5)  # idle past idle_seconds, held by the reserve
    queued = service.submit(ALICE, "someone-else", "t1", "echo hi")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and queued.id not in worker.handled:
        time.sleep(0.1)
    assert queued.id in worker.handled
    worker.stop()
    thread.join(timeout=25)
    assert not thread.is_alive()
    assert registry.view(time.time()).idle == {}


def _handled_within(worker: Worker, command_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and command_id not in worker.handled:
        time.sleep(0.1)
    return command_id in worker.handled


def _a_follow_up(service: CommandService, repository: WorkersRepository, project: str) -> str:
    """A person's next command: queued right after the project's last one ended."""
    first = service.submit(ALICE, project, "t1", "ls")
    claimed = repository.claim(first.id, "w0", time.time() - 2, 30)
    repository.finish(claimed, CommandStatus.SUCCEEDED, time.time(), exit_code=0, worker="w0")
    follow_up = service.submit(ALICE, project, "t1", "echo next")
    assert follow_up.lane == Lane.FOLLOW_UPS
    return follow_up.id


def test_a_held_worker_leaves_a_new_projects_command_and_takes_a_follow_up(
    service: CommandService,
    make_worker: MakeWorker,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
) -> None:
    """The one idle worker is held for people typing: a burst into a new project waits for a
    worker of its own (the scaler starts one); the person's next command runs at once."""
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(1, 1, time.time())
    worker = make_worker(idle_seconds=1, fleet=registry)
    thread = _in_thread(worker)
    burst = service.submit(ALICE, "new-project", "t1", "echo build")
    assert burst.lane == Lane.COMMANDS
    assert not _handled_within(worker, burst.id, 3)
    assert in_queue(aws, config) == 1  # still there for a worker of its own
    follow_up = _a_follow_up(service, repository, "typing")
    assert _handled_within(worker, follow_up, 10)
    assert repository.get(follow_up).status == CommandStatus.SUCCEEDED  # type: ignore[union-attr]
    registry.publish_reserve(1, 0, time.time())  # no longer held: it takes anything
    assert _handled_within(worker, burst.id, 10)
    worker.stop()
    thread.join(timeout=25)
    assert not thread.is_alive()
    assert repository.get(burst.id).status == CommandStatus.SUCCEEDED  # type: ignore[union-attr]
    assert in_queue(aws, config, config.follow_ups_queue_url) == 0  # deleted from its lane


def test_a_free_worker_looks_at_the_follow_up_lane_first(
    service: CommandService,
    make_worker: MakeWorker,
    repository: WorkersRepository,
) -> None:
    older = service.submit(ALICE, "build", "t1", "echo build")
    follow_up = _a_follow_up(service, repository, "typing")
    worker = make_worker(idle_seconds=1)
    assert worker.run_forever() == 0
    assert worker.handled == [follow_up, older.id]


def test_a_held_worker_about_to_leave_takes_what_waits_in_the_command_queue_first(
    service: CommandService, make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    """Held, it polled only the follow-up lane; once it may leave (the newest worker is held
    now), a command waiting in the command queue is run, not left behind it."""
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(0, 1, time.time())  # held, and nothing to hold it in the fleet
    queued = service.submit(ALICE, "waiting", "t1", "echo taken")
    worker = make_worker(idle_seconds=1, fleet=registry)
    assert worker.run_forever() == 0
    assert worker.handled == [queued.id]


def test_a_project_moving_between_lanes_still_runs_one_command_at_a_time_in_order(
    service: CommandService,
    make_worker: MakeWorker,
    aws: boto3.session.Session,
    config: WorkersConfig,
    repository: WorkersRepository,
) -> None:
    """A person's first command (command queue), three typed in a row after it (the follow-up
    lane), one after the project went cold (the command queue again), three workers taking
    from both lanes: every append lands, in order."""
    from workers.wiring import build_service

    workers = [make_worker(idle_seconds=3) for _ in range(3)]
    threads = [_in_thread(w) for w in workers]

    def appended(n: int, via: CommandService = service) -> str:
        return via.submit(ALICE, "lanes", "t1", f"echo {n} >> counter.txt; sleep 0.05").id

    def settled(ids: list[str]) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            not (c := repository.get(i)) or not c.status.finished for i in ids
        ):
            time.sleep(0.1)

    first = [appended(1)]
    settled(first)
    typed = [appended(n) for n in (2, 3, 4)]
    settled(typed)
    later = build_service(config, session=aws, clock=lambda: time.time() + KEEP_WARM_SECONDS)
    cold = [appended(5, later)]
    settled(cold)
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout=30)
    ids = first + typed + cold
    lanes = [repository.get(i).lane for i in ids]  # type: ignore[union-attr]
    assert lanes == [Lane.COMMANDS, *[Lane.FOLLOW_UPS] * 3, Lane.COMMANDS]
    counter = objects(aws, "workspaces/lanes/")["workspaces/lanes/counter.txt"].decode().split()
    assert counter == ["1", "2", "3", "4", "5"]
    assert {repository.get(i).status for i in ids} == {CommandStatus.SUCCEEDED}  # type: ignore[union-attr]


def test_the_worker_that_ran_a_projects_command_takes_its_next_one_at_once(
    service: CommandService, make_worker: MakeWorker, repository: WorkersRepository
) -> None:
    """A burst into one project: each command is free the moment the one before it is
    deleted, and the worker that ran that one — the newest idle, never held — takes it right
    then, while the held one stays on the follow-up lane."""
    registry = FleetRegistry(repository.table)
    registry.publish_reserve(2, 0, time.time())  # both stay
    older = make_worker(idle_seconds=1, fleet=registry)
    threads = [_in_thread(older)]
    time.sleep(0.5)
    newer = make_worker(idle_seconds=1, fleet=registry)
    threads.append(_in_thread(newer))
    time.sleep(0.5)
    registry.publish_reserve(2, 1, time.time())  # and the longest idle one is held
    time.sleep(HELD_POLL_SECONDS + 1)  # each has looked again at whether it is held
    burst = [service.submit(ALICE, "burst", "t1", f"echo {n}").id for n in range(3)]
    assert _handled_within(newer, burst[-1], 15)
    assert (older.handled, newer.handled) == ([], burst)
    for worker in (older, newer):
        worker.stop()
    for thread in threads:
        thread.join(timeout=30)


def test_a_leaving_worker_clears_its_idle_entry_through_a_passing_fault(
    make_worker: MakeWorker, repository: WorkersRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left behind, the entry would count as an idle worker for a minute."""
    registry = FleetRegistry(repository.table)
    real_busy = registry.busy
    calls: list[str] = []

    def flaky_busy(worker: str) -> None:
        calls.append(worker)
        if len(calls) == 1:
            raise RuntimeError("a passing fault")
        real_busy(worker)

    monkeypatch.setattr(registry, "busy", flaky_busy)
    worker = make_worker(idle_seconds=1, fleet=registry)
    assert worker.run_forever() == 0
    assert len(calls) == 2
    assert registry.view(time.time()).idle == {}
