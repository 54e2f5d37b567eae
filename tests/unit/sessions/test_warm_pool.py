"""Warm pools: started before anyone asks, claimed by one caller only, refilled, recycled."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from sessions.config import SessionsConfig
from sessions.models import Session, Status, new_session_id
from sessions.reaping import Decision, Reaper
from sessions.repository import Claimed
from sessions.service import SessionService
from sessions.warm import (
    ORPHAN_GRACE_SECONDS,
    WARM_STARTED_BY,
    WarmTask,
    plan,
    wanted,
)
from shared.windows import Window
from tests.aws import FakeClock
from tests.unit.sessions.conftest import (
    ALICE,
    BOB,
    RecordingNotifier,
    recorded,
    tasks_in_cluster,
)

CAROL = "arn:aws:sts::123456789012:assumed-role/berth-client/carol"
MONDAY_8AM = datetime(2026, 11, 30, 8, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def warm(
    config: SessionsConfig,
    aws: boto3.session.Session,
    clock: FakeClock,
    notifier: RecordingNotifier,
) -> SessionService:
    """The service with a pool of 2 for the default profile (none for chroma)."""
    profiles = dict(config.profiles)
    profiles["default"] = profiles["default"].model_copy(
        update={"warm_pool": 2, "max_warm_seconds": 1800}
    )
    return recorded(
        config.model_copy(update={"profiles": profiles, "max_sessions_per_user": 3}),
        aws,
        clock,
        notifier,
    )


def actions(decisions: list[Decision]) -> list[str]:
    return [d.action for d in decisions]


def warm_tasks(aws: boto3.session.Session, config: SessionsConfig) -> list[dict[str, Any]]:
    return [
        t
        for t in tasks_in_cluster(aws, config)
        if t["startedBy"] == WARM_STARTED_BY and t["lastStatus"] != "STOPPED"
    ]


def boot(service: SessionService, aws: boto3.session.Session, config: SessionsConfig) -> None:
    """ECS reports every warm task running (what the task-state events do)."""
    for task in warm_tasks(aws, config):
        service.on_task_event({**task, "lastStatus": "RUNNING"})


def filled(service: SessionService, aws: boto3.session.Session, config: SessionsConfig) -> None:
    assert actions(Reaper(service).reap(dry_run=False)) == ["launch_warm_task"] * 2
    boot(service, aws, config)


# --- windows and the plan (pure) -------------------------------------------------------------


def test_a_window_holds_its_days_and_hours_in_utc() -> None:
    weekdays = Window.parse("mon-fri 07:00-19:00")
    assert weekdays.contains(MONDAY_8AM)
    assert not weekdays.contains(MONDAY_8AM + 11 * 3600)  # 19:00: the end is not inside
    assert not weekdays.contains(MONDAY_8AM - 2 * 86400)  # Saturday
    assert Window.parse("fri-mon 00:00-24:00").contains(MONDAY_8AM - 2 * 86400)
    assert Window.parse("* 08:00-08:01").contains(MONDAY_8AM)
    assert wanted(3, ["sat 00:00-24:00"], MONDAY_8AM) == 0
    assert wanted(3, ["sat 00:00-24:00", "mon 08:00-09:00"], MONDAY_8AM) == 3
    assert wanted(3, [], MONDAY_8AM) == 3


@pytest.mark.parametrize(
    "bad", ["weekdays 07:00-19:00", "mon 19:00-07:00", "mon 07:00", "mon 25:00-26:00", "xyz"]
)
def test_a_bad_window_is_refused_with_its_text(bad: str) -> None:
    with pytest.raises(ValueError, match=r"expected|must end|days are|not a time"):
        Window.parse(bad)


def test_the_plan_recycles_the_stale_trims_the_surplus_and_fills_the_rest() -> None:
    def task(n: int, since: float) -> WarmTask:
        return WarmTask(task_arn=f"t{n}", profile="p", warm_since=since)

    now = 10_000.0
    stale, old, new = task(1, now - 4000), task(2, now - 100), task(3, now - 10)
    assert plan(2, [stale, old, new], now, 3600) == plan(2, [new, old, stale], now, 3600)
    assert plan(2, [stale, old, new], now, 3600).retire == [stale]
    assert plan(2, [stale, old, new], now, 3600).launch == 0
    assert plan(1, [old, new], now, 3600).retire == [old]  # over the size: oldest goes
    assert plan(3, [old], now, 3600).launch == 2
    assert plan(0, [old, new], now, 3600).retire == [old, new]


# --- the pool against moto ---------------------------------------------------------------------


def test_the_reaper_fills_the_pool_with_tasks_that_know_no_user(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    assert actions(Reaper(warm).reap(dry_run=False)) == ["launch_warm_task"] * 2
    tasks = warm_tasks(aws, config)
    assert len(tasks) == 2
    for task in tasks:
        environment = task["overrides"]["containerOverrides"][0]["environment"]
        assert environment == [{"name": "BERTH_WARM_POOL", "value": "default"}]
    # not claimable before they run; the next run launches no more
    assert [t.ready for t in warm.repo.warm_pool("default")] == [False, False]
    assert actions(Reaper(warm).reap(dry_run=False)) == []
    boot(warm, aws, config)
    assert [t.ready for t in warm.repo.warm_pool("default")] == [True, True]


def test_a_profile_without_a_pool_costs_no_pool_work(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    assert Reaper(service).reap(dry_run=False) == []
    assert warm_tasks(aws, config) == []


def test_create_claims_a_ready_task_and_answers_running_with_its_address(
    warm: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    notifier: RecordingNotifier,
) -> None:
    filled(warm, aws, config)
    ready = {t.task_arn: t.private_ip for t in warm.repo.warm_pool("default")}

    session, created = warm.create(ALICE, "default", None)

    assert created and session.status == Status.RUNNING
    assert session.task_arn in ready and session.private_ip == ready[session.task_arn]
    assert warm.get(ALICE, session.id).status == Status.RUNNING
    assert notifier.changes[-1].status == Status.RUNNING
    # it left the pool, and a replacement is on its way (refilled in the background)
    pool = warm.repo.warm_pool("default")
    assert session.task_arn not in {t.task_arn for t in pool}
    assert len(pool) == 2 and sorted(t.ready for t in pool) == [False, True]
    claimed = warm.repo.warm_task(session.task_arn or "")
    assert claimed and claimed.claimed_by == session.id


def test_callers_beyond_the_pool_start_cold_and_no_task_is_given_twice(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    filled(warm, aws, config)
    sessions = [warm.create(user, "default", None)[0] for user in (ALICE, BOB, CAROL)]
    assert [s.status for s in sessions].count(Status.RUNNING) == 2
    assert [s.status for s in sessions].count(Status.STARTING) == 1
    assert len({s.task_arn for s in sessions}) == 3


def test_a_task_claimed_once_cannot_be_claimed_again(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig, clock: FakeClock
) -> None:
    """Two callers racing for one task (both read it ready): the conditional write lets
    exactly one through; the other's session stays PENDING, to start cold."""
    filled(warm, aws, config)
    task = warm.repo.warm_pool("default")[0]
    pending = [pending_session(warm, user, clock.now) for user in (ALICE, BOB)]
    running = [p.moved(Status.RUNNING, clock.now, task_arn=task.task_arn) for p in pending]
    warm.repo.claim_warm(task, pending[0], running[0])
    with pytest.raises(Claimed):
        warm.repo.claim_warm(task, pending[1], running[1])
    assert [warm.repo.get(p.id).status for p in pending] == [Status.RUNNING, Status.PENDING]  # type: ignore[union-attr]
    claimed = warm.repo.warm_task(task.task_arn)
    assert claimed and claimed.claimed_by == pending[0].id


def pending_session(service: SessionService, user: str, now: float) -> Session:
    session = Session(
        id=new_session_id(now),
        user=user,
        profile="default",
        status=Status.PENDING,
        created_at=now,
        updated_at=now,
        expires_at=now + 600,
        last_heartbeat_at=now,
        idle_timeout_seconds=600,
        port=8080,
    )
    assert service.repo.create(session, 3).created
    return session


def test_an_empty_pool_falls_back_to_a_cold_start(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, created = warm.create(ALICE, "default", None)
    assert created and session.status == Status.STARTING
    assert session.task_arn not in {t["taskArn"] for t in warm_tasks(aws, config)}


def test_warm_tasks_are_recycled_after_max_warm_seconds(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig, clock: FakeClock
) -> None:
    filled(warm, aws, config)
    old = {t["taskArn"] for t in warm_tasks(aws, config)}
    clock.advance(1800)
    decisions = actions(Reaper(warm).reap(dry_run=False))
    assert decisions == ["retire_warm_task"] * 2 + ["launch_warm_task"] * 2
    assert not old & {t["taskArn"] for t in warm_tasks(aws, config)}  # the old ones stopped
    assert len(warm.repo.warm_pool("default")) == 2


def test_outside_its_windows_the_pool_is_emptied(
    warm: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    clock: FakeClock,
) -> None:
    filled(warm, aws, config)
    profile = warm.config.profiles["default"]
    closed = datetime.fromtimestamp(clock.now, UTC).strftime("%a").lower()
    window = f"{'sun' if closed != 'sun' else 'mon'} 00:00-00:01"
    warm.config.profiles["default"] = profile.model_copy(update={"warm_windows": [window]})
    assert actions(Reaper(warm).reap(dry_run=False)) == ["retire_warm_task"] * 2
    assert warm_tasks(aws, config) == [] and warm.repo.warm_pool("default") == []


def test_a_claimed_tasks_events_are_its_sessions(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    filled(warm, aws, config)
    session, _ = warm.create(ALICE, "default", None)
    (task,) = [t for t in warm_tasks(aws, config) if t["taskArn"] == session.task_arn]
    crashed = {
        **task,
        "lastStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
    }
    failed = warm.on_task_event(crashed)
    assert failed and failed.id == session.id and failed.status == Status.FAILED
    assert warm.repo.warm_task(session.task_arn or "") is None


def test_the_reaper_stops_a_warm_task_without_an_entry_once_past_the_grace(
    warm: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filled(warm, aws, config)
    lost = warm.repo.warm_pool("default")[0].task_arn
    warm.repo.forget_warm(lost)  # its entry lost (or still being written)
    describe = warm.tasks.describe
    created = clock.now - 5  # moto reports no createdAt; ECS does
    monkeypatch.setattr(
        warm.tasks,
        "describe",
        lambda arns: {
            arn: replace(info, created_at=created) if info else None
            for arn, info in describe(arns).items()
        },
    )
    orphans = [d for d in Reaper(warm).reap(dry_run=False) if d.action == "stop_orphan_task"]
    assert orphans == []
    clock.advance(ORPHAN_GRACE_SECONDS + 1)
    orphans = [d for d in Reaper(warm).reap(dry_run=False) if d.action == "stop_orphan_task"]
    assert [(d.reason, d.signals["task_arn"]) for d in orphans] == [
        ("warm task without a pool entry", lost)
    ]
    assert lost not in {t["taskArn"] for t in warm_tasks(aws, config)}


def test_the_reaper_stops_a_claimed_task_whose_session_is_over(
    warm: SessionService, aws: boto3.session.Session, config: SessionsConfig, clock: FakeClock
) -> None:
    filled(warm, aws, config)
    session, _ = warm.create(ALICE, "default", None)
    ended = session.moved(Status.FAILED, clock.now, error="recorded, but the task ran on")
    warm.repo.replace(session, ended)
    orphans = [d for d in Reaper(warm).reap(dry_run=False) if d.action == "stop_orphan_task"]
    assert [(d.session_id, d.reason) for d in orphans] == [(session.id, "its session is over")]
    assert session.task_arn not in {t["taskArn"] for t in warm_tasks(aws, config)}
