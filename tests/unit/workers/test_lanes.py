"""The two lanes: which queue a command travels in, and the one rule order rests on — a
project's unfinished commands are all in one lane (one FIFO message group), whatever races."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace

import boto3
import pytest

from tests.unit.workers.conftest import ALICE, KEEP_WARM_SECONDS
from workers.config import WorkersConfig
from workers.models import Command, CommandStatus, ErrorCode
from workers.repository import LaneState, WorkersRepository
from workers.scaling import Lane
from workers.service import CommandService


def ended(repository: WorkersRepository, command: Command, at: float | None = None) -> None:
    at = time.time() if at is None else at
    claimed = repository.claim(command.id, "w", at - 1, 30)
    repository.finish(claimed, CommandStatus.SUCCEEDED, at, exit_code=0, worker="w")


def queued_ids(aws: boto3.session.Session, queue_url: str) -> list[str]:
    sqs = aws.client("sqs")
    ids = []
    while messages := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages"):
        ids += [json.loads(m["Body"])["command_id"] for m in messages]
    return ids


def test_a_projects_first_command_and_a_burst_travel_in_the_command_queue(
    service: CommandService, aws: boto3.session.Session, config: WorkersConfig
) -> None:
    burst = [service.submit(ALICE, "build", "t1", f"make part{n}") for n in range(3)]
    assert {c.lane for c in burst} == {Lane.COMMANDS}
    assert sorted(queued_ids(aws, config.queue_url)) == sorted(c.id for c in burst)


def test_a_command_typed_soon_after_the_last_one_ended_is_a_follow_up(
    service: CommandService,
    repository: WorkersRepository,
    aws: boto3.session.Session,
    config: WorkersConfig,
) -> None:
    ended(repository, service.submit(ALICE, "typing", "t1", "ls"))
    follow_up = service.submit(ALICE, "typing", "t1", "cat README")
    behind = service.submit(ALICE, "typing", "t1", "make")  # typed ahead: joins its lane
    assert (follow_up.lane, behind.lane) == (Lane.FOLLOW_UPS, Lane.FOLLOW_UPS)
    assert queued_ids(aws, config.follow_ups_queue_url or "") == [follow_up.id, behind.id]
    assert repository.lane_of("typing").unfinished == 2


def test_a_project_gone_cold_is_back_in_the_command_queue(
    service: CommandService, repository: WorkersRepository
) -> None:
    ended(repository, service.submit(ALICE, "p", "t1", "ls"), time.time() - KEEP_WARM_SECONDS)
    assert service.submit(ALICE, "p", "t1", "ls").lane == Lane.COMMANDS


def test_a_project_changes_lanes_only_once_nothing_of_it_is_unfinished(
    service: CommandService, repository: WorkersRepository
) -> None:
    """Its last command ended a second ago, but another one still waits in the command
    queue: the new one must queue behind it there, or the two could run side by side."""
    ended(repository, service.submit(ALICE, "p", "t1", "first"))
    waiting = service.submit(ALICE, "p", "t1", "second")  # a follow-up: the lane is taken
    assert waiting.lane == Lane.FOLLOW_UPS
    ended(repository, service.get(ALICE, "p", waiting.id))
    cold = service.submit(ALICE, "other", "t1", "x")
    assert cold.lane == Lane.COMMANDS
    burst = [service.submit(ALICE, "q", "t1", f"part{n}") for n in range(2)]
    ended(repository, burst[0])  # one of the burst ended; the other still waits
    assert service.submit(ALICE, "q", "t1", "typed now").lane == Lane.COMMANDS


def at(moment: float) -> Callable[[], float]:
    return lambda: moment


def stale_first_read(service: CommandService, state: LaneState) -> list[str]:
    """The service's next read of a lane returns ``state`` (as a caller that read before
    another's write would); returns the projects read, in order."""
    reads: list[str] = []
    real = service.repo.lane_of

    def lane_of(project: str) -> LaneState:
        reads.append(project)
        return state if len(reads) == 1 else real(project)

    service.repo.lane_of = lane_of  # type: ignore[method-assign]
    return reads


def test_a_caller_that_read_a_stale_lane_joins_the_one_taken(
    service: CommandService, repository: WorkersRepository
) -> None:
    """Two callers race: one read "nothing unfinished, ended a second ago" (the follow-up
    lane) while the other had already queued into the command queue. The conditional write
    fails and the loser reads again."""
    service.submit(ALICE, "p", "t1", "queued first")  # the command queue holds p now
    reads = stale_first_read(service, LaneState(None, 0, time.time() - 1))
    second = service.submit(ALICE, "p", "t1", "second")
    assert reads == ["p", "p"]  # refused once, then read again
    assert second.lane == Lane.COMMANDS
    assert repository.lane_of("p").unfinished == 2


def test_a_burst_racing_a_keep_warm_boundary_lands_in_one_lane(
    config: WorkersConfig, aws: boto3.session.Session, repository: WorkersRepository
) -> None:
    """Twenty commands at once into a project whose last command ended right at the edge of
    keep_warm_seconds: every caller read the lane before any of them wrote, each with its own
    clock on either side of the edge — all twenty in one lane, each counted once."""
    from workers.wiring import build_service

    config = config.model_copy(update={"max_pending_per_user": 50})
    ended(repository, build_service(config, session=aws).submit(ALICE, "p", "t1", "ls"))
    before = repository.lane_of("p")
    edge = (before.last_ended_at or 0.0) + KEEP_WARM_SECONDS
    commands = []
    for n in range(20):
        caller = build_service(config, session=aws, clock=at(edge + (0.5 if n % 2 else -0.5)))
        stale_first_read(caller, before)
        commands.append(caller.submit(ALICE, "p", "t1", f"cmd {n}"))
    assert [c.lane for c in commands] == [Lane.FOLLOW_UPS] * 20  # the first caller's lane
    assert repository.lane_of("p").unfinished == 20


@pytest.mark.parametrize(
    "how", ["cancelled", "worker", "lost", "undeliverable"], ids=lambda how: how
)
def test_every_final_status_frees_the_lane(
    service: CommandService, repository: WorkersRepository, how: str
) -> None:
    command = service.submit(ALICE, "p", "t1", "ls")
    now = time.time()
    if how == "cancelled":
        service.cancel(ALICE, "p", command.id)
    elif how == "undeliverable":
        error = (ErrorCode.UNDELIVERABLE, "dlq")
        repository.finish(command, CommandStatus.FAILED, now, error=error)
    else:
        claimed = repository.claim(command.id, "w", now, 30)
        if how == "worker":
            repository.finish(claimed, CommandStatus.SUCCEEDED, now, exit_code=0, worker="w")
        else:
            error = (ErrorCode.WORKER_LOST, "lost")
            lease = claimed.lease_expires_at
            repository.finish(
                claimed, CommandStatus.FAILED, now, error=error, lease_expires_at=lease
            )
    state = repository.lane_of("p")
    assert state.unfinished == 0
    assert state.last_ended_at is not None and abs(state.last_ended_at - time.time()) < 5


def test_a_command_queued_before_lanes_leaves_the_count_alone(
    service: CommandService, repository: WorkersRepository
) -> None:
    """It was never counted: ending it must not let its project switch lanes under a newer
    command that is."""
    counted = service.submit(ALICE, "p", "t1", "new")
    legacy = replace(counted, id=counted.id[:-1] + "0", lane=None)
    repository.add(legacy, 10)
    repository.finish(legacy, CommandStatus.CANCELLED, time.time())
    assert repository.lane_of("p").unfinished == 1
