"""The scaler: reads the pending commands, counts the fleet, launches in RunTask batches of ten."""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from tests.unit.workers.conftest import ALICE, BOB, queue
from workers.config import ScalerConfig, WorkersConfig
from workers.fleet import STARTED_BY, Fleet
from workers.models import Command, CommandStatus
from workers.repository import WorkersRepository
from workers.reserve import FLEET_KEY, LEFT, FleetRegistry
from workers.scaler import scale
from workers.scaling import QUEUED
from workers.service import CommandService


class FakeEcs:
    """RunTask as ECS answers it: at most 10 per call; throttles the first ``throttle`` calls.
    ``running``/``starting`` live tasks are ``run<n>``/``start<n>``, or the ids in ``ids``."""

    def __init__(
        self, throttle: int = 0, running: int = 0, starting: int = 0, ids: tuple[str, ...] = ()
    ) -> None:
        self.throttle = throttle
        self.calls: list[dict[str, Any]] = []
        self.tasks = {f"run{n}": "RUNNING" for n in range(running)}
        self.tasks |= {f"start{n}": "PENDING" for n in range(starting)}
        self.tasks |= dict.fromkeys(ids, "RUNNING")
        self.tags: dict[str, dict[str, str]] = {}
        """Tags ECS holds per task id (TagResource)."""

    def tag_resource(self, resourceArn: str, tags: list[dict[str, str]]) -> None:
        task = resourceArn.rsplit("/", 1)[-1]
        assert resourceArn == f"{ARN}/{task}", "a task ARN of the fleet's cluster"
        self.tags.setdefault(task, {}).update({t["key"]: t["value"] for t in tags})

    def run_task(self, **kwargs: Any) -> dict[str, Any]:
        if self.throttle:
            self.throttle -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "RunTask"
            )
        assert kwargs["count"] <= 10
        self.calls.append(kwargs)
        first = len(self.tasks)
        started = [f"t{first + n}" for n in range(kwargs["count"])]
        self.tasks |= dict.fromkeys(started, "PENDING")
        return {"tasks": [{"taskArn": f"{ARN}/{task}"} for task in started], "failures": []}

    def get_paginator(self, name: str) -> Any:
        tasks = self.tasks

        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{"taskArns": [f"{ARN}/{task}" for task in tasks]}]

        return Pages()

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        return {
            "tasks": [
                {"taskArn": arn, "lastStatus": self.tasks[arn.rsplit("/", 1)[-1]]} for arn in tasks
            ]
        }


ARN = "arn:aws:ecs:us-east-1:123456789012:task/berth"


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
            "max_workers_per_user": 3,
            "reserve_minimum": 0,
            "reserve_window_seconds": 120,
            "warm_reserve_share": 0.4,
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
    assert (len(started), failures) == (25, [])
    assert started[:2] == ["t0", "t1"]  # task ids: what a worker is bound by
    assert [c["count"] for c in ecs.calls] == [10, 10, 5]
    assert {c["startedBy"] for c in ecs.calls} == {STARTED_BY}


def test_throttling_is_retried_with_backoff() -> None:
    ecs = FakeEcs(throttle=2)
    started, _ = fleet(ecs).launch(3)
    assert len(started) == 3
    assert len(ecs.calls) == 1


def test_lists_each_live_worker_task_and_whether_it_runs() -> None:
    live = fleet(FakeEcs(running=2, starting=3)).live()
    assert live == {"run0": True, "run1": True, "start0": False, "start1": False, "start2": False}


def ran(repository: WorkersRepository, command: Command, ended: float) -> None:
    claimed = repository.claim(command.id, "w", ended - 3, 60)
    repository.finish(claimed, CommandStatus.SUCCEEDED, ended, exit_code=0, worker="w")


def idle(registry: FleetRegistry, *workers: str) -> None:
    now = time.time()
    for worker in workers:
        registry.idle(worker, now - 5, now)


def test_each_user_gets_a_bound_worker_per_busy_project(
    service: CommandService, repository: WorkersRepository
) -> None:
    for n in range(3):  # three commands of one project need one worker, not three
        queue(service, ALICE, "one", "t1", f"echo {n}")
    queue(service, ALICE, "two", "t1", "sleep 300")
    queue(service, BOB, "three", "t1", "echo")
    config = scaler_config()
    assert config.task_subnets == ["subnet-1", "subnet-2"]
    fleet_registry = registry(repository)
    ecs = FakeEcs()
    result = scale(config, repository, fleet(ecs), fleet_registry, time.time())
    assert (result["observed"]["users"], result["observed"]["projects"]) == (2, 3)
    assert result["bound"] == 0  # no reserve to bind from
    reserve = 2  # ceil(0.4 x 3 projects active)
    assert result["launch"] == result["started"] == 3 + reserve
    bindings = {f"t{n}": fleet_registry.binding_of(f"t{n}") for n in range(5)}
    assert sorted(u for u in bindings.values() if u) == [ALICE, ALICE, BOB]
    # for the bill: every worker says what it is; a bound one, whose it is (the reserve: none)
    assert all(c["tags"] == [{"key": "berth:capability", "value": "workers"}] for c in ecs.calls)
    tagged = {task: tags.get("berth:user") for task, tags in ecs.tags.items()}
    assert tagged == {task: user for task, user in bindings.items() if user}
    view = fleet_registry.view(time.time())
    assert view.bound_per_user() == {ALICE: 2, BOB: 1}  # starting ones count
    # the same work again, with those starting: nothing more
    again = scale(config, repository, fleet(ecs), fleet_registry, time.time())
    assert again["launch"] == 0 and again["bound"] == 0


def test_idle_reserve_workers_are_bound_before_any_is_started(
    service: CommandService, repository: WorkersRepository
) -> None:
    fleet_registry = registry(repository)
    idle(fleet_registry, "r1", "r2")
    queue(service, ALICE, "one", "t1", "echo")
    ecs = FakeEcs(ids=("r1", "r2"))
    result = scale(scaler_config(), repository, fleet(ecs), fleet_registry, time.time())
    assert result["bound"] == 1
    (bound,) = [w for w in ("r1", "r2") if fleet_registry.binding_of(w) == ALICE]
    view = fleet_registry.view(time.time())
    assert list(view.bound) == [bound] and bound not in view.idle
    # the reserve (ceil(0.4 x 1) = 1) still has the other one: nothing started
    assert result["launch"] == 0


def test_a_bound_worker_whose_task_is_gone_counts_for_nothing(
    service: CommandService, repository: WorkersRepository
) -> None:
    """Killed without a word, it still says it is alive for a minute: ECS knows better."""
    fleet_registry = registry(repository)
    fleet_registry.alive("killed", ALICE, time.time())
    queue(service, ALICE, "one", "t1", "echo")
    config = scaler_config(warm_reserve_share=0)
    result = scale(config, repository, fleet(FakeEcs()), fleet_registry, time.time())
    assert result["started"] == 1


def test_a_user_holds_at_most_max_workers_per_user(
    service: CommandService, repository: WorkersRepository
) -> None:
    for n in range(5):  # the user's limit of queued commands here
        queue(service, ALICE, f"p{n}", "t1", "sleep 60")
    config = scaler_config(max_workers_per_user=3, warm_reserve_share=0)
    fleet_registry = registry(repository)
    result = scale(config, repository, fleet(FakeEcs()), fleet_registry, time.time())
    assert result["started"] == 3
    assert fleet_registry.view(time.time()).bound_per_user() == {ALICE: 3}


def test_the_fleet_ceiling_caps_bound_and_reserve_workers(
    service: CommandService, repository: WorkersRepository
) -> None:
    queue(service, ALICE, "a", "t1", "echo")
    queue(service, BOB, "b", "t1", "echo")
    config = scaler_config(max_tasks=2, reserve_minimum=4)
    result = scale(config, repository, fleet(FakeEcs(running=1)), registry(repository), 1e9)
    assert result["launch"] == 1  # one slot left: one user's worker, no reserve


def test_a_worker_that_left_unbound_is_never_bound(
    service: CommandService, repository: WorkersRepository
) -> None:
    fleet_registry = registry(repository)
    idle(fleet_registry, "r1")
    assert fleet_registry.leave_unbound("r1", time.time())
    queue(service, ALICE, "one", "t1", "echo")
    ecs = FakeEcs(ids=("r1",))  # still stopping
    result = scale(scaler_config(), repository, fleet(ecs), fleet_registry, time.time())
    assert fleet_registry.binding_of("r1") == LEFT
    assert result["bound"] == 0 and result["started"] == 1


def test_the_reserve_is_a_share_of_the_projects_active_lately_with_a_minimum(
    service: CommandService, repository: WorkersRepository
) -> None:
    now = time.time()
    for n in range(11):
        ran(repository, queue(service, ALICE, f"p{n}", "t1", "ls"), now - 30)
    config = scaler_config(reserve_minimum=4)
    result = scale(config, repository, fleet(FakeEcs()), registry(repository), now)
    assert result["observed"]["reserve"] == 5  # ceil(0.4 x 11)
    assert result["launch"] == 5
    assert registry(repository).view(now).reserve == 5
    few = scale(config, repository, fleet(FakeEcs()), registry(repository), now)
    assert few["observed"]["reserve"] == 5
    later = now + 200  # nothing active within reserve_window_seconds: the fleet goes to zero
    cold = scale(config, repository, fleet(FakeEcs(running=5)), registry(repository), later)
    assert (cold["observed"]["reserve"], cold["launch"]) == (0, 0)
    assert registry(repository).view(later).reserve == 0


def test_min_tasks_reserve_workers_are_kept_at_all_times(repository: WorkersRepository) -> None:
    config = scaler_config(min_tasks=2)
    result = scale(config, repository, fleet(FakeEcs()), registry(repository), time.time())
    assert result["launch"] == 2
    assert registry(repository).view(time.time()).reserve == 2  # they stay once idle


def test_an_idle_stack_writes_nothing(repository: WorkersRepository) -> None:
    scale(scaler_config(), repository, fleet(FakeEcs()), registry(repository), time.time())
    assert repository.table.get_item(Key={"pk": FLEET_KEY}).get("Item") is None


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
    queue(queueing, ALICE, "woken", "t1", "ls")
    (call,) = invoked
    assert (call["FunctionName"], call["InvocationType"]) == ("scaler", "Event")
    assert json.loads(call["Payload"]) == {"reason": QUEUED}  # not a scheduled run


class FakeSqs:
    def create_queue(self, **_: Any) -> dict[str, str]:
        return {"QueueUrl": "https://sqs/alice.fifo"}

    def send_message(self, **_: Any) -> dict[str, str]:
        return {"MessageId": "m", "SequenceNumber": "1"}
