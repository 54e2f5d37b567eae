"""Nothing stays QUEUED or RUNNING forever: lost leases and dead letters end commands."""

from __future__ import annotations

import time

import boto3

from tests.unit.workers.conftest import ALICE, MAX_RECEIVES, Frames, queue, user_queue
from workers.config import WorkersConfig
from workers.models import CommandStatus, ErrorCode
from workers.reconcile import Reconciler, declare_lost
from workers.repository import WorkersRepository
from workers.service import CommandService


def reconciler(
    repository: WorkersRepository, aws: boto3.session.Session, dlq: str, frames: Frames
) -> Reconciler:
    return Reconciler(
        repository=repository,
        sqs=aws.client("sqs"),
        dead_letter_queue_url=dlq,
        clock=time.time,
        publish=frames,
    )


def test_a_running_command_without_a_live_lease_ends_worker_lost(
    service: CommandService,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    dead_letter_queue: str,
    frames: Frames,
) -> None:
    lost = queue(service, ALICE, "demo", "t1", "sleep 100")
    alive = queue(service, ALICE, "other", "t1", "sleep 100")
    waiting = queue(service, ALICE, "third", "t1", "echo later")
    repository.claim(lost.id, "gone", time.time() - 90, 60)
    repository.claim(alive.id, "here", time.time(), 60)

    ended = reconciler(repository, aws, dead_letter_queue, frames).run()

    assert ended == {"worker_lost": [lost.id], "undeliverable": [], "budget_exceeded": []}
    shown = service.get(ALICE, "demo", lost.id)
    assert (shown.status, shown.error_code) == (CommandStatus.FAILED, ErrorCode.WORKER_LOST)
    assert service.get(ALICE, "other", alive.id).status == CommandStatus.RUNNING
    assert service.get(ALICE, "third", waiting.id).status == CommandStatus.QUEUED
    assert frames.sent == [
        (
            "terminal:demo:t1",
            {"type": "status", "command_id": lost.id, "seq": None, "data": {"status": "FAILED"}},
        )
    ]
    assert [c.id for c in repository.active() if not c.status.finished] == [alive.id, waiting.id]
    # with no keep-warm time, the next run takes the ended command out of the active index
    reconciler(repository, aws, dead_letter_queue, frames).run()
    assert [c.id for c in repository.active()] == [alive.id, waiting.id]


def test_a_lease_renewed_after_it_was_read_is_not_declared_lost(
    service: CommandService, repository: WorkersRepository
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "sleep 100")
    stale = repository.claim(queued.id, "slow", time.time() - 90, 60)  # read: expired
    repository.renew(queued.id, "slow", time.time(), 60, "still here")  # ... then renewed
    assert declare_lost(repository, stale, time.time()) is False
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.RUNNING


def test_a_message_in_the_dead_letter_queue_ends_its_command_undeliverable(
    service: CommandService,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
    dead_letter_queue: str,
    frames: Frames,
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "echo never")
    sqs = aws.client("sqs")
    for _ in range(MAX_RECEIVES):  # received and never deleted: a poison message
        sqs.receive_message(QueueUrl=user_queue(aws), VisibilityTimeout=0)
    assert sqs.receive_message(QueueUrl=user_queue(aws)).get("Messages") is None  # moved

    ended = reconciler(repository, aws, dead_letter_queue, frames).run()

    assert ended == {"worker_lost": [], "undeliverable": [queued.id], "budget_exceeded": []}
    shown = service.get(ALICE, "demo", queued.id)
    assert (shown.status, shown.error_code) == (CommandStatus.FAILED, ErrorCode.UNDELIVERABLE)
    assert sqs.receive_message(QueueUrl=dead_letter_queue).get("Messages") is None  # drained
    assert reconciler(repository, aws, dead_letter_queue, frames).run() == {
        "worker_lost": [],
        "undeliverable": [],
        "budget_exceeded": [],
    }


def test_a_dead_letter_of_a_command_still_held_by_a_live_worker_leaves_it_alone(
    service: CommandService,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    dead_letter_queue: str,
    frames: Frames,
) -> None:
    queued = queue(service, ALICE, "demo", "t1", "sleep 100")
    repository.claim(queued.id, "here", time.time(), 60)
    aws.client("sqs").send_message(
        QueueUrl=dead_letter_queue,
        MessageBody=f'{{"command_id": "{queued.id}", "project": "demo"}}',
        MessageGroupId="demo",
        MessageDeduplicationId=queued.id,
    )
    assert reconciler(repository, aws, dead_letter_queue, frames).run()["undeliverable"] == []
    assert service.get(ALICE, "demo", queued.id).status == CommandStatus.RUNNING
