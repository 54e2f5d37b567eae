"""The worker loop against moto: sync, run, stream, upload, delete, failure and SIGTERM paths."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from berth_worker.worker import Worker
from shared.api import ApiError
from tests.unit.workers.conftest import ALICE, BOB, BUCKET, Frames
from workers.config import WorkersConfig
from workers.models import CommandStatus
from workers.service import CommandService


def objects(aws: boto3.session.Session, prefix: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def queue_depth(aws: boto3.session.Session, config: WorkersConfig) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=config.queue_url,
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
    assert (done.status, done.exit_code) == (CommandStatus.SUCCEEDED, 0)
    assert done.duration_seconds is not None
    files = objects(aws, "workspaces/demo/")
    assert files == {"workspaces/demo/hello.txt": b"hello\n", "workspaces/demo/new.txt": b"made\n"}
    assert objects(aws, "logs/demo/") == {f"logs/demo/{queued.id}.log": b"hello\n"}
    assert frames.output() == "hello\n"
    assert queue_depth(aws, config) == 0
    # protection was set while the message was in flight and cleared after
    assert worker.protection.calls == [True, False]


def test_frames_go_to_the_terminal_topic_with_increasing_seq(
    service: CommandService, worker: Worker, frames: Frames
) -> None:
    service.submit(ALICE, "demo", "t7", "for i in 1 2 3; do echo line $i; sleep 0.15; done")
    worker.run_forever()
    channels = {channel for channel, _ in frames.sent}
    assert channels == {"terminal:demo:t7"}
    seqs = [m["seq"] for _, m in frames.sent]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    kinds = [m["type"] for _, m in frames.sent]
    assert kinds[0] == "status"
    assert kinds[-1] == "status"
    assert frames.sent[-1][1]["data"] == {"status": "SUCCEEDED", "exit_code": 0}
    assert kinds.count("output") >= 2  # the sleeps split the output into several frames
    assert frames.output() == "line 1\nline 2\nline 3\n"


def test_a_failing_command_is_failed_with_its_exit_code_and_log(
    service: CommandService, worker: Worker, aws: boto3.session.Session
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "echo oops >&2; exit 3")
    worker.run_forever()
    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.exit_code) == (CommandStatus.FAILED, 3)
    assert objects(aws, "logs/demo/")[f"logs/demo/{queued.id}.log"] == b"oops\n"


def test_a_command_over_its_timeout_is_killed(service: CommandService, worker: Worker) -> None:
    worker.command_timeout = 0.5
    queued = service.submit(ALICE, "demo", "t1", "sleep 30")
    worker.run_forever()
    done = service.get(ALICE, "demo", queued.id)
    assert (done.status, done.exit_code) == (CommandStatus.FAILED, 124)
    assert done.error == "timed out after 0 s"


def test_sigterm_hands_an_unfinished_command_back_to_the_queue(
    service: CommandService,
    worker: Worker,
    aws: boto3.session.Session,
    config: WorkersConfig,
) -> None:
    worker.stop_grace = 0.3
    queued = service.submit(ALICE, "demo", "t1", "sleep 30")
    (message,) = aws.client("sqs").receive_message(QueueUrl=config.queue_url)["Messages"]
    import threading

    threading.Timer(0.3, worker.stop).start()  # SIGTERM arrives while the command runs
    worker.handle(message)
    again = service.get(ALICE, "demo", queued.id)
    assert again.status == CommandStatus.QUEUED
    assert again.started_at is None
    # visible again at once, for a healthy worker to run
    (redelivered,) = aws.client("sqs").receive_message(QueueUrl=config.queue_url)["Messages"]
    assert redelivered["Body"] == message["Body"]


def test_sigterm_lets_a_short_command_finish(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "sleep 0.5; echo done")
    (message,) = aws.client("sqs").receive_message(QueueUrl=config.queue_url)["Messages"]
    import threading

    threading.Timer(0.1, worker.stop).start()
    worker.handle(message)
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.SUCCEEDED
    assert queue_depth(aws, config) == 0


def test_a_duplicate_delivery_does_not_run_twice(
    service: CommandService, worker: Worker, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    queued = service.submit(ALICE, "demo", "t1", "echo once >> runs.txt")
    sqs = aws.client("sqs")
    (message,) = sqs.receive_message(QueueUrl=config.queue_url)["Messages"]
    worker.handle(message)
    worker.handle(message)  # the same message again
    files = objects(aws, "workspaces/demo/")
    assert files["workspaces/demo/runs.txt"] == b"once\n"
    assert worker.handled == [queued.id]


def test_only_changed_objects_are_downloaded(worker: Worker, aws: boto3.session.Session) -> None:
    s3 = aws.client("s3")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/a.txt", Body=b"a")
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/b.txt", Body=b"b")
    assert worker.sync.down("demo") == 2
    assert worker.sync.down("demo") == 0
    s3.put_object(Bucket=BUCKET, Key="workspaces/demo/b.txt", Body=b"b2")
    assert worker.sync.down("demo") == 1


def test_object_keys_cannot_escape_the_workspace(
    worker: Worker, aws: boto3.session.Session, tmp_path: Path
) -> None:
    aws.client("s3").put_object(Bucket=BUCKET, Key="workspaces/demo/../../evil", Body=b"x")
    with pytest.raises(ValueError, match="outside the workspace"):
        worker.sync.down("demo")


def test_projects_belong_to_their_first_user(service: CommandService) -> None:
    service.submit(ALICE, "alices", "t1", "true")
    with pytest.raises(ApiError) as raised:
        service.submit(BOB, "alices", "t1", "true")
    assert raised.value.status == 404
    queued = service.submit(ALICE, "alices", "t2", "true")
    with pytest.raises(ApiError):
        service.get(BOB, "alices", queued.id)


def test_a_command_over_the_length_limit_is_a_400(service: CommandService) -> None:
    with pytest.raises(ApiError) as raised:
        service.submit(ALICE, "demo", "t1", "x" * 201)
    assert (raised.value.status, raised.value.code) == (400, "command_too_long")
