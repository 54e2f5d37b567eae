"""The reaper's decisions: each from the signals it logs, none without a reason."""

from __future__ import annotations

import boto3

from sessions.config import SessionsConfig
from sessions.models import Session, Status
from sessions.reaping import Decision, Reaper
from sessions.service import SessionService
from tests.aws import FakeClock
from tests.unit.sessions.conftest import ALICE, BOB, running_tasks, tasks_in_cluster


def actions(decisions: list[Decision]) -> list[tuple[str | None, str, str]]:
    return [(d.session_id, d.action, d.reason) for d in decisions]


def test_nothing_to_do_for_fresh_sessions(service: SessionService) -> None:
    service.create(ALICE, "default", None)
    assert Reaper(service).reap(dry_run=False) == []


def test_expired_sessions_are_stopped(
    service: SessionService, clock: FakeClock, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = service.create(ALICE, "default", 600)
    clock.advance(300)
    service.heartbeat(ALICE, session.id)
    clock.advance(301)
    decisions = Reaper(service).reap(dry_run=False)
    assert actions(decisions) == [(session.id, "stop", "ttl expired")]
    assert decisions[0].signals["expires_at"] <= clock.now
    stored = service.repo.get(session.id)
    assert stored and stored.status == Status.STOPPING
    assert running_tasks(aws, config) == []
    # reading it reconciles with ECS, where the task has stopped
    assert service.get(ALICE, session.id).status == Status.STOPPED


def test_idle_sessions_are_stopped_unless_they_heartbeat(
    service: SessionService, clock: FakeClock, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    idle, _ = service.create(ALICE, "default", None)
    busy, _ = service.create(BOB, "default", None)
    for task in tasks_in_cluster(aws, config):
        service.on_task_event({**task, "lastStatus": "RUNNING"})
    for _ in range(3):
        clock.advance(400)
        service.heartbeat(BOB, busy.id)
    decisions = Reaper(service).reap(dry_run=False)
    assert actions(decisions) == [(idle.id, "stop", "idle (no heartbeat)")]
    assert service.get(BOB, busy.id).status.live


def test_a_session_still_starting_is_not_idle(
    service: SessionService, clock: FakeClock, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    """A start may outlast the idle timeout (an image pull, a slow boot): nobody could use it
    yet, so its idle clock starts when it runs."""
    session, _ = service.create(ALICE, "default", None)
    clock.advance(1000)  # past the 900 s idle timeout, still not RUNNING
    assert actions(Reaper(service).reap(dry_run=False)) == []
    (task,) = tasks_in_cluster(aws, config)
    running = service.on_task_event({**task, "lastStatus": "RUNNING"})
    assert running is not None and running.idle_deadline == clock.now + 900
    clock.advance(901)
    assert actions(Reaper(service).reap(dry_run=False)) == [
        (session.id, "stop", "idle (no heartbeat)")
    ]


def test_a_session_whose_task_vanished_is_marked_failed(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = service.create(ALICE, "default", None)
    # the task disappears from ECS (e.g. stopped and expired out of DescribeTasks)
    from moto.ecs.models import ecs_backends

    backend = ecs_backends["123456789012"]["us-east-1"]
    cluster_name = config.cluster_arn.rsplit("/", 1)[-1]
    backend.tasks[cluster_name].clear()

    decisions = Reaper(service).reap(dry_run=False)
    assert actions(decisions) == [(session.id, "mark_failed", "task vanished")]
    failed = service.get(ALICE, session.id)
    assert failed.status == Status.FAILED
    assert failed.error == "task vanished"


def test_orphan_tasks_are_stopped(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    # Given a berth-tagged task whose session record is gone
    result = service.tasks.run(
        session_id="ses_" + "0" * 28,
        user=ALICE,
        profile="default",
        task_definition=config.profiles["default"].task_definition,
        container="session",
        environment={},
    )
    assert result.task_arn
    decisions = Reaper(service).reap(dry_run=False)
    assert actions(decisions) == [
        ("ses_" + "0" * 28, "stop_orphan_task", "task runs but its session is not live")
    ]
    assert running_tasks(aws, config) == []


def test_a_session_started_while_the_reaper_runs_keeps_its_task(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    """Found by the chaos run (make chaos, all=0.1, seed 1): the reaper read the live
    sessions, a session was created and its task started, then the reaper listed the running
    tasks and stopped the new one as an orphan — the user's session ended FAILED."""
    reaper = Reaper(service)
    read_active = service.repo.active
    started: list[str] = []

    def active_then_a_new_session() -> list[Session]:
        before = read_active()
        started.append(service.create(ALICE, "default", None)[0].id)
        return before

    service.repo.active = active_then_a_new_session  # type: ignore[method-assign]
    assert [d for d in reaper.reap(dry_run=False) if d.action == "stop_orphan_task"] == []
    assert len(running_tasks(aws, config)) == 1
    assert service.get(ALICE, started[0]).status.live


def test_a_stalled_pending_session_is_failed_after_the_grace_period(
    service: SessionService, clock: FakeClock
) -> None:
    from sessions.models import Session, new_session_id

    now = clock.now
    stalled = Session(
        id=new_session_id(now),
        user=ALICE,
        profile="default",
        status=Status.PENDING,
        created_at=now,
        updated_at=now,
        expires_at=now + 3600,
        last_heartbeat_at=now,
        idle_timeout_seconds=900,
        port=8080,
    )
    assert service.repo.create(stalled, 5).created
    assert Reaper(service).reap(dry_run=False) == []
    clock.advance(31)
    assert actions(Reaper(service).reap(dry_run=False)) == [
        (stalled.id, "mark_failed", "never got a task")
    ]
    # the profile slot is free again
    _, created = service.create(ALICE, "default", None)
    assert created


def test_dry_run_only_reports(
    service: SessionService, clock: FakeClock, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = service.create(ALICE, "default", 60)
    clock.advance(61)
    decisions = Reaper(service).reap(dry_run=True)
    assert actions(decisions) == [(session.id, "stop", "ttl expired")]
    assert service.get(ALICE, session.id).status.live
    assert len(running_tasks(aws, config)) == 1
