"""The scaler: reads the pending commands, counts the fleet, launches in RunTask batches of ten."""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from tests.unit.workers.conftest import ALICE
from workers.config import ScalerConfig, WorkersConfig
from workers.fleet import STARTED_BY, Fleet
from workers.models import Command, CommandStatus
from workers.repository import WorkersRepository
from workers.reserve import FLEET_KEY, FleetRegistry
from workers.scaler import scale
from workers.scaling import QUEUED, RETURNS_WITHIN_SECONDS, Lane
from workers.service import CommandService


class FakeEcs:
    """RunTask as ECS answers it: at most 10 per call; throttles the first ``throttle`` calls."""

    def __init__(self, throttle: int = 0, running: int = 0, starting: int = 0) -> None:
        self.throttle = throttle
        self.calls: list[dict[str, Any]] = []
        self.tasks = ["RUNNING"] * running + ["PENDING"] * starting

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        if self.throttle:
            self.throttle -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "RunTask"
            )
        assert kwargs["count"] <= 10
        self.calls.append(kwargs)
        return {"tasks": [{"taskArn": f"t{i}"} for i in range(kwargs["count"])], "failures": []}

    def get_paginator(self, name: str) -> Any:
        tasks = self.tasks

        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"taskArns": [f"arn:{i}" for i in range(len(tasks))]}]

        return Pages()

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        return {"tasks": [{"lastStatus": self.tasks[int(a.split(":")[1])]} for a in tasks]}


def scaler_config(**overrides: Any) -> ScalerConfig:
    return ScalerConfig.model_validate(
        {
            "workers_table": "workers",
            "cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/berth",
            "worker_task_definition": "berth-worker",
            "worker_family": "berth-worker",
            "task_subnets": "subnet-1,subnet-2",
            "task_security_groups": "sg-1",
            "assign_public_ip": True,
            "min_tasks": 0,
            "max_tasks": 10,
            "keep_warm_seconds": 60,
            "warm_reserve_share": 0.34,
            "other_reserve_share": 0.2,
            "held_for_follow_ups_share": 0.15,
        }
        | overrides
    )


def registry(repository: WorkersRepository) -> FleetRegistry:
    return FleetRegistry(repository.table)


def fleet(ecs: FakeEcs) -> Fleet:
    return Fleet(
        ecs,
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/berth",
        task_definition="berth-worker",
        family="berth-worker",
        subnets=["subnet-1"],
        security_groups=["sg-1"],
        assign_public_ip=True,
        sleep=lambda _: None,
    )


def test_launches_go_out_in_batches_of_ten() -> None:
    ecs = FakeEcs()
    started, failures = fleet(ecs).launch(25)
    assert (started, failures) == (25, [])
    assert [c["count"] for c in ecs.calls] == [10, 10, 5]
    assert {c["startedBy"] for c in ecs.calls} == {STARTED_BY}


def test_throttling_is_retried_with_backoff() -> None:
    ecs = FakeEcs(throttle=2)
    started, _ = fleet(ecs).launch(3)
    assert started == 3
    assert len(ecs.calls) == 1


def test_counts_running_and_starting_workers() -> None:
    assert fleet(FakeEcs(running=2, starting=3)).counts() == (2, 3)


def test_scale_sizes_the_fleet_to_the_projects_with_commands(
    service: CommandService, repository: WorkersRepository
) -> None:
    for n in range(3):  # three commands of one project need one worker, not three
        service.submit(ALICE, "one", "t1", f"echo {n}")
    running = service.submit(ALICE, "two", "t1", "sleep 300")
    repository.claim(running.id, "w", 1.0e9, 60)  # busy on a long command
    service.submit(ALICE, "three", "t1", "echo")
    config = scaler_config(warm_reserve_share=0, other_reserve_share=0)
    assert config.task_subnets == ["subnet-1", "subnet-2"]
    ecs = FakeEcs(running=1)  # the one running the long command
    result = scale(config, repository, fleet(ecs), registry(repository), time.time())
    assert result["observed"] == {
        "running": 1,
        "starting": 0,
        "projects": 3,
        "visible": 0,
        "commands": 5,
        "warm": 0,
        "reserve": 0,
        "interactive": 0,
        "held": 0,
    }
    assert (result["launch"], result["started"]) == (2, 2)
    # the same work again, with those two starting: nothing more
    ecs.tasks += ["PENDING"] * 2
    assert scale(config, repository, fleet(ecs), registry(repository), time.time())["launch"] == 0


def test_a_project_whose_command_just_ended_keeps_a_reserve_worker(
    service: CommandService, repository: WorkersRepository
) -> None:
    """Its person is likely typing the next command: a worker is held for it (and published
    as the reserve, which idle workers read) for keep_warm_seconds, then none."""
    command = service.submit(ALICE, "typing", "t1", "ls")
    claimed = repository.claim(command.id, "w", time.time() - 5, 60)
    repository.finish(claimed, CommandStatus.SUCCEEDED, time.time() - 2, exit_code=0, worker="w")
    now = time.time()
    warm = scale(scaler_config(), repository, fleet(FakeEcs(running=0)), registry(repository), now)
    assert (warm["observed"]["warm"], warm["observed"]["reserve"], warm["launch"]) == (1, 1, 1)
    assert registry(repository).view(now).reserve == 1
    later = now + 200
    cold = scale(
        scaler_config(), repository, fleet(FakeEcs(running=1)), registry(repository), later
    )
    assert (cold["observed"]["reserve"], cold["launch"]) == (0, 0)  # the fleet scales to zero
    assert registry(repository).view(later).reserve == 0  # the idle worker may leave now


def ran(repository: WorkersRepository, command: Command, ended: float) -> None:
    claimed = repository.claim(command.id, "w", ended - 3, 60)
    repository.finish(claimed, CommandStatus.SUCCEEDED, ended, exit_code=0, worker="w")


def test_the_reserve_is_a_share_of_the_projects_active_lately_more_for_people_typing(
    service: CommandService, repository: WorkersRepository
) -> None:
    """Six people reading their last command's output (each typed a follow-up), and five
    projects that ran one command: a share of each, held by any worker — not one each."""
    now = time.time()
    for n in range(6):
        ran(repository, service.submit(ALICE, f"person{n}", "t1", "ls"), now - 30)
        follow_up = service.submit(ALICE, f"person{n}", "t1", "make")
        assert follow_up.lane == Lane.FOLLOW_UPS
        ran(repository, follow_up, now - 2)
    for n in range(5):
        command = service.submit(ALICE, f"build{n}", "t1", "make")
        assert command.lane == Lane.COMMANDS  # a project's first command
        ran(repository, command, now - 2)
    result = scale(
        scaler_config(), repository, fleet(FakeEcs(running=1)), registry(repository), now
    )
    observed = result["observed"]
    assert (observed["interactive"], observed["warm"]) == (6, 17)
    assert observed["reserve"] == 4  # ceil(6 x 0.34 + 5 x 0.2)
    assert observed["held"] == 1  # ceil(6 x 0.15): idle workers that take follow-ups only
    assert result["launch"] == 3
    view = registry(repository).view(now)
    assert (view.reserve, view.held) == (4, 1)


def test_min_tasks_idle_workers_are_held_like_a_reserve(repository: WorkersRepository) -> None:
    config = scaler_config(min_tasks=2)
    result = scale(config, repository, fleet(FakeEcs()), registry(repository), time.time())
    assert result["launch"] == 2
    assert registry(repository).view(time.time()).reserve == 2  # they stay once idle


def test_an_idle_stack_writes_nothing(repository: WorkersRepository) -> None:
    scale(scaler_config(), repository, fleet(FakeEcs()), registry(repository), time.time())
    assert repository.table.get_item(Key={"pk": FLEET_KEY}).get("Item") is None


def test_a_new_projects_command_gets_a_worker_of_its_own_beside_the_reserve(
    service: CommandService, repository: WorkersRepository
) -> None:
    """Idle workers held for people typing are no capacity for a new project: a run woken by
    its command starts a worker for it on top of the reserve, as the scheduled run would."""
    now = time.time()
    ran(repository, service.submit(ALICE, "reading", "t1", "ls"), now - 30)
    ran(repository, service.submit(ALICE, "reading", "t1", "ls -l"), now - 2)  # a follow-up
    idle_reserve = FakeEcs(running=1)
    quiet = scale(scaler_config(), repository, fleet(idle_reserve), registry(repository), now)
    assert (quiet["observed"]["reserve"], quiet["observed"]["held"], quiet["launch"]) == (1, 1, 0)
    service.submit(ALICE, "new", "t1", "make")  # taken by nobody yet
    woken = scale(scaler_config(), repository, fleet(idle_reserve), registry(repository), now)
    assert (woken["observed"]["reserve"], woken["launch"]) == (1, 1)  # was 0 before lanes


def test_at_the_fleet_ceiling_nothing_is_held(
    service: CommandService, repository: WorkersRepository
) -> None:
    now = time.time()
    ran(repository, service.submit(ALICE, "reading", "t1", "ls"), now - 30)
    ran(repository, service.submit(ALICE, "reading", "t1", "ls -l"), now - 2)  # a follow-up
    service.submit(ALICE, "new", "t1", "make")  # waits in the command queue
    full = scale(
        scaler_config(max_tasks=1), repository, fleet(FakeEcs(running=1)), registry(repository), now
    )
    assert (full["observed"]["interactive"], full["observed"]["held"], full["launch"]) == (1, 0, 0)
    assert registry(repository).view(now).held == 0  # the one idle worker takes "new"


def test_the_top_up_leaves_a_reserve_worker_that_just_took_a_command_to_come_back(
    service: CommandService, repository: WorkersRepository
) -> None:
    """A person's follow-up took the one reserve worker 5 s ago: it will most likely be idle
    again before a new worker could boot, so the scheduled run starts none; once the command
    has run RETURNS_WITHIN_SECONDS, it does."""
    command = service.submit(ALICE, "typing", "t1", "ls -l")
    now = time.time()
    repository.claim(command.id, "w", now - 5, 60)
    one_busy = FakeEcs(running=1)
    ticked = scale(scaler_config(), repository, fleet(one_busy), registry(repository), now)
    assert (ticked["observed"]["projects"], ticked["observed"]["reserve"]) == (1, 1)
    assert ticked["launch"] == 0
    later = now + RETURNS_WITHIN_SECONDS  # it has run 5 s longer than that
    ticked = scale(scaler_config(), repository, fleet(one_busy), registry(repository), later)
    assert ticked["launch"] == 1  # a long command: the reserve needs a worker of its own


def test_the_scaler_is_woken_as_a_queued_command(
    config: WorkersConfig, repository: WorkersRepository
) -> None:
    invoked: list[dict[str, Any]] = []

    class Lambda:
        def invoke(self, **kwargs: Any) -> None:
            invoked.append(kwargs)

    queueing = CommandService(
        config=config.model_copy(update={"scaler_function": "scaler"}),
        repository=repository,
        sqs=FakeSqs(),
        s3=None,
        lambda_client=Lambda(),
        clock=time.time,
    )
    queueing.submit(ALICE, "woken", "t1", "ls")
    (call,) = invoked
    assert (call["FunctionName"], call["InvocationType"]) == ("scaler", "Event")
    assert json.loads(call["Payload"]) == {"reason": QUEUED}  # not a scheduled run


class FakeSqs:
    def send_message(self, **_: Any) -> dict[str, str]:
        return {"MessageId": "m", "SequenceNumber": "1"}
