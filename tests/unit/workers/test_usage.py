"""A worker's compute is its user's from the moment it is bound to them to its task's stop —
a worker started for them from its image pull (its boot counts), a reserve worker from the
bind (its wait before is the operator's) — recorded once; a user over budget queues nothing."""

from __future__ import annotations

import time

import boto3
import pytest

from shared.records import iso
from shared.usage import BudgetExceeded, Ledger, Metering, Pricing, UsageConfig, month_of
from tests.aws import FakeClock, usage_ledger
from tests.synth import Synth
from tests.unit.workers.conftest import ALICE, BOB, Frames, queue
from workers.config import WorkersConfig
from workers.metering import meter_worker
from workers.models import CommandStatus, ErrorCode
from workers.reconcile import Reconciler
from workers.repository import WorkersRepository
from workers.reserve import FleetRegistry
from workers.service import CommandService
from workers.wiring import build_service

PRICES = Pricing()
HOURLY = 0.5 * PRICES.fargate_vcpu_hour + 1 * PRICES.fargate_gb_hour  # 512 CPU, 1024 MiB
ARN = "arn:aws:ecs:us-east-1:123456789012:task/berth"


@pytest.fixture
def ledger(aws: boto3.session.Session, synth: Synth) -> Ledger:
    return usage_ledger(aws, synth)  # type: ignore[no-any-return]


def stopped(worker: str, pulled: float, stopped_at: float) -> dict[str, object]:
    return {
        "taskArn": f"{ARN}/{worker}",
        "lastStatus": "STOPPED",
        "startedBy": "berth-workers",
        "pullStartedAt": iso(pulled),
        "stoppedAt": iso(stopped_at),
    }


def metered(
    task: dict[str, object], registry: FleetRegistry, ledger: Ledger, clock: FakeClock
) -> object:
    return meter_worker(
        task,
        registry=registry,
        metering=Metering(ledger, PRICES, None, clock),
        cpu=512,
        memory_mib=1024,
        clock=clock,
    )


def test_a_bound_worker_is_its_users_from_its_boot_or_its_bind_to_its_stop(
    repository: WorkersRepository, ledger: Ledger, clock: FakeClock
) -> None:
    registry = FleetRegistry(repository.table)
    start = clock()
    # started for alice: bound as the scaler launched it, its image pulled a moment after
    assert registry.bind("w-for-alice", ALICE, start)
    assert metered(stopped("w-for-alice", start + 2, start + 302), registry, ledger, clock)
    # from the reserve: idle for 10 minutes, then bound to alice, stopped 5 minutes later
    assert registry.bind("w-reserve", ALICE, start + 600)
    event = stopped("w-reserve", start, start + 900)
    assert metered(event, registry, ledger, clock)
    assert metered(event, registry, ledger, clock)  # the event again: counted once
    uses = {u.resource: u for u in ledger.records(ALICE, 0, start + 3600)}
    assert (uses["w-for-alice"].started_at, uses["w-for-alice"].seconds) == (start + 2, 300)
    assert (uses["w-reserve"].started_at, uses["w-reserve"].seconds) == (start + 600, 300)
    assert uses["w-reserve"].dollars == pytest.approx(300 / 3600 * HOURLY, abs=1e-8)
    assert ledger.spent(ALICE, month_of(start)) == pytest.approx(600 / 3600 * HOURLY, abs=2e-8)


def test_a_worker_nobody_bound_is_the_operators(
    repository: WorkersRepository, ledger: Ledger, clock: FakeClock
) -> None:
    registry = FleetRegistry(repository.table)
    assert registry.leave_unbound("w-idle", clock())  # a reserve worker that left unbound
    assert metered(stopped("w-idle", clock(), clock() + 60), registry, ledger, clock) is None
    assert metered(stopped("w-never", clock(), clock() + 60), registry, ledger, clock) is None
    running = {**stopped("w-idle", clock(), clock()), "lastStatus": "RUNNING"}
    assert metered(running, registry, ledger, clock) is None
    assert ledger.month(month_of(clock())) == []


def test_over_budget_no_command_is_queued(
    config: WorkersConfig, aws: boto3.session.Session, ledger: Ledger
) -> None:
    service = build_service(config, session=aws, usage=UsageConfig(usage_table="usage"))
    ledger.set_budget(ALICE, 0.0)
    with pytest.raises(BudgetExceeded):
        service.submit(ALICE, "p", "t", "echo hi")
    assert service.repo.pending(ALICE) == 0


@pytest.mark.parametrize("stop_over_budget", [True, False])
def test_over_budget_queued_commands_are_cancelled_saying_why_running_ones_finish(
    service: CommandService,
    repository: WorkersRepository,
    ledger: Ledger,
    aws: boto3.session.Session,
    dead_letter_queue: str,
    frames: Frames,
    stop_over_budget: bool,
) -> None:
    running = queue(service, ALICE, "p", "t", "sleep 60")
    repository.claim(running.id, "w1", time.time(), 60)
    waiting = queue(service, ALICE, "p", "t", "echo next")
    theirs = queue(service, BOB, "q", "t", "echo bob")
    ledger.set_budget(ALICE, 0.0)  # alice is over; bob has no budget
    reconciler = Reconciler(
        repository=repository,
        sqs=aws.client("sqs"),
        dead_letter_queue_url=dead_letter_queue,
        clock=time.time,
        publish=frames,
        metering=Metering(ledger, PRICES, None, time.time, stop_over_budget=stop_over_budget),
    )
    ended = reconciler.run()
    if not stop_over_budget:  # budgets only refuse new work unless the operator asks more
        assert ended["budget_exceeded"] == []
        assert repository.get(waiting.id).status == CommandStatus.QUEUED  # type: ignore[union-attr]
        return
    assert ended["budget_exceeded"] == [waiting.id]
    cancelled = repository.get(waiting.id)
    assert cancelled is not None and cancelled.status == CommandStatus.CANCELLED
    assert cancelled.error_code == ErrorCode.BUDGET_EXCEEDED
    assert (cancelled.error_message or "").startswith("over budget: $0.0000 spent this month")
    assert [f["data"] for f in frames.of(waiting.id)] == [{"status": "CANCELLED"}]
    assert repository.get(running.id).status == CommandStatus.RUNNING  # type: ignore[union-attr]
    assert repository.get(theirs.id).status == CommandStatus.QUEUED  # type: ignore[union-attr]
