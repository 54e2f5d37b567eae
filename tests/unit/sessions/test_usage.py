"""A session's compute is its owner's: from its task's image pull (or, on a warm task, from
the claim) to the task's stop, recorded once; a user over budget starts none."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from sessions.config import SessionsConfig
from sessions.models import SessionOut
from sessions.reaping import Reaper
from sessions.service import SessionService
from sessions.wiring import build_service
from shared.records import iso
from shared.usage import BudgetExceeded, Ledger, Pricing, UsageConfig
from tests.aws import FakeClock, usage_ledger
from tests.synth import Synth
from tests.unit.sessions.conftest import ALICE, BOB, RecordingNotifier, tasks_in_cluster
from tests.unit.sessions.test_warm_pool import boot

PRICES = Pricing()


@pytest.fixture
def ledger(aws: boto3.session.Session, synth: Synth) -> Ledger:
    return usage_ledger(aws, synth)  # type: ignore[no-any-return]


def metered(
    config: SessionsConfig, aws: boto3.session.Session, clock: FakeClock, **profile: Any
) -> SessionService:
    profiles = dict(config.profiles)
    profiles["default"] = profiles["default"].model_copy(update=profile)
    return build_service(
        config.model_copy(update={"profiles": profiles}),
        session=aws,
        clock=clock,
        usage=UsageConfig(usage_table="usage"),
    )


def stopped(task: dict[str, Any], pulled: float, stopped_at: float) -> dict[str, Any]:
    """The task's STOPPED event, as ECS sends it (times as ISO strings)."""
    return {
        **task,
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": "UserInitiated",
        "pullStartedAt": iso(pulled),
        "stoppedAt": iso(stopped_at),
    }


def test_a_stopped_task_is_its_owners_time_once_and_tagged_for_the_bill(
    config: SessionsConfig, aws: boto3.session.Session, clock: FakeClock, ledger: Ledger
) -> None:
    service = metered(config, aws, clock, cpu=1024, memory=2048)
    session, _ = service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    tags = {t["key"]: t["value"] for t in task["tags"]}
    assert (tags["berth:user"], tags["berth:capability"]) == (ALICE, "sessions")

    started = clock() + 3  # ECS pulls the image a little after RunTask
    event = stopped(task, started, started + 600)
    clock.advance(700)
    service.on_task_event(event)
    service.on_task_event(event)  # EventBridge delivers at least once
    service.get(ALICE, session.id)  # and GET reconciles with ECS
    (use,) = ledger.records(ALICE, 0, clock() + 1)
    assert (use.id, use.capability, use.resource) == (
        f"session/{session.id}",
        "sessions",
        session.id,
    )
    assert (use.started_at, use.ended_at, use.seconds) == (started, started + 600, 600)
    assert use.dollars == pytest.approx(
        600 / 3600 * (PRICES.fargate_vcpu_hour + 2 * PRICES.fargate_gb_hour)
    )


def test_a_warm_task_is_the_operators_until_it_is_claimed(
    config: SessionsConfig, aws: boto3.session.Session, clock: FakeClock, ledger: Ledger
) -> None:
    service = metered(config, aws, clock, warm_pool=1)
    Reaper(service).reap(dry_run=False)  # the pool's task starts, for nobody
    boot(service, aws, config)
    (warm,) = tasks_in_cluster(aws, config)
    booted = clock()
    clock.advance(1800)  # half an hour waiting in the pool
    session, _ = service.create(ALICE, "default", None)  # claimed now
    assert session.task_arn == warm["taskArn"]
    (claimed,) = [t for t in tasks_in_cluster(aws, config) if t["taskArn"] == warm["taskArn"]]
    assert {t["key"]: t["value"] for t in claimed["tags"]}["berth:user"] == ALICE
    clock.advance(60)
    service.on_task_event(stopped(warm, booted, clock()))
    (use,) = ledger.records(ALICE, 0, clock() + 1)
    assert (use.started_at, use.seconds) == (session.created_at, 60)


def test_over_budget_no_session_starts(
    config: SessionsConfig, aws: boto3.session.Session, clock: FakeClock, ledger: Ledger
) -> None:
    service = metered(config, aws, clock)
    ledger.set_budget(ALICE, 0.0)
    with pytest.raises(BudgetExceeded):
        service.create(ALICE, "default", None)
    assert tasks_in_cluster(aws, config) == []


@pytest.mark.parametrize("stop_over_budget", [True, False])
def test_over_budget_running_sessions_are_stopped_saying_why_if_the_operator_asks(
    config: SessionsConfig,
    aws: boto3.session.Session,
    clock: FakeClock,
    ledger: Ledger,
    notifier: RecordingNotifier,
    stop_over_budget: bool,
) -> None:
    service = metered(config, aws, clock)
    assert service.metering is not None
    service.metering.stop_over_budget = stop_over_budget
    service.notifier = notifier
    session, _ = service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    service.on_task_event({**task, "lastStatus": "RUNNING"})
    theirs, _ = service.create(BOB, "default", None)
    ledger.set_budget(ALICE, 0.0)  # alice is over budget from now on; bob has none

    decisions = Reaper(service).reap(dry_run=False)
    stopped_ids = [d.session_id for d in decisions if d.action == "stop"]
    if not stop_over_budget:  # budgets refuse new compute only, unless asked
        assert stopped_ids == []
        return
    assert stopped_ids == [session.id]
    shown = service.get(ALICE, session.id)
    assert not shown.status.live
    assert (shown.stop_reason or "").startswith("berth reaper: over budget: $0.0000 spent")
    pushed = SessionOut.of(notifier.changes[-1])
    assert pushed.id == session.id and "over budget" in (pushed.stop_reason or "")
    assert service.get(BOB, theirs.id).status.live
