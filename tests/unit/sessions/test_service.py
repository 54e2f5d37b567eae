"""Session logic against moto: launch, relaunch, stop, reconcile, events, failures."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from sessions.config import SessionsConfig
from sessions.models import Status
from sessions.repository import count_key
from sessions.service import SessionService
from sessions.tasks import SESSION_TAG
from shared.api import status_of
from shared.errors import DomainError
from shared.transactions import counted
from tests.aws import FakeClock
from tests.unit.sessions.conftest import (
    ALICE,
    BOB,
    RecordingNotifier,
    running_tasks,
    tasks_in_cluster,
)


def task_event(task: dict[str, Any], last_status: str, **extra: Any) -> dict[str, Any]:
    """The detail of an ECS "Task State Change" event for ``task``."""
    return {**task, "lastStatus": last_status, **extra}


# --- launch ----------------------------------------------------------------------------------


def test_create_starts_one_tagged_fargate_task_for_the_caller(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    # Given no sessions, when Alice asks for one
    session, created = service.create(ALICE, "default", None)

    # Then a new session is starting on exactly one task that carries its id
    assert created is True
    assert session.status == Status.STARTING
    assert session.user == ALICE
    assert session.port == 8080
    (task,) = running_tasks(aws, config)
    assert task["taskArn"] == session.task_arn
    assert {"key": SESSION_TAG, "value": session.id} in task["tags"]
    assert task["startedBy"] == f"berth:{session.id}"
    overrides = task["overrides"]["containerOverrides"][0]["environment"]
    assert {"name": "BERTH_SESSION_ID", "value": session.id} in overrides


def test_create_again_returns_the_live_session_without_a_second_task(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    first, _ = service.create(ALICE, "default", None)
    again, created = service.create(ALICE, "default", None)
    assert created is False
    assert again.id == first.id
    assert len(running_tasks(aws, config)) == 1


def test_sessions_are_per_user_and_per_profile(service: SessionService) -> None:
    alice_default, _ = service.create(ALICE, "default", None)
    alice_chroma, created_chroma = service.create(ALICE, "chroma", None)
    bob_default, created_bob = service.create(BOB, "default", None)
    assert created_chroma and created_bob
    assert len({alice_default.id, alice_chroma.id, bob_default.id}) == 3
    assert alice_chroma.port == 8000


def test_ttl_defaults_to_the_profile_and_may_not_exceed_its_maximum(
    service: SessionService, clock: FakeClock
) -> None:
    session, _ = service.create(ALICE, "default", None)
    assert session.expires_at == clock.now + 3600
    with pytest.raises(DomainError) as raised:
        service.create(BOB, "default", 7201)
    assert (status_of(raised.value), raised.value.code) == (400, "invalid_request")
    assert "7200" in raised.value.message


def test_unknown_profile_is_a_400_that_lists_the_known_ones(service: SessionService) -> None:
    with pytest.raises(DomainError) as raised:
        service.create(ALICE, "gpu", None)
    assert (status_of(raised.value), raised.value.code) == (400, "unknown_profile")
    assert "chroma, default" in raised.value.message


def test_live_session_limit_is_a_429(service: SessionService, config: SessionsConfig) -> None:
    service.config = config.model_copy(update={"max_sessions_per_user": 1})
    service.create(ALICE, "default", None)
    with pytest.raises(DomainError) as raised:
        service.create(ALICE, "chroma", None)
    assert (status_of(raised.value), raised.value.code) == (429, "session_limit")
    # the limit counts live sessions only, and per user
    service.create(BOB, "chroma", None)


def test_stopping_frees_the_limit_round_after_round(
    service: SessionService, config: SessionsConfig
) -> None:
    """Start up to the limit, stop, start again — round after round: every stop gives its
    place back (a lost decrement would lock the user out at the limit)."""
    service.config = config.model_copy(update={"max_sessions_per_user": 1})
    for _ in range(3):
        first, created = service.create(ALICE, "default", None)
        assert created
        with pytest.raises(DomainError) as raised:
            service.create(ALICE, "chroma", None)
        assert raised.value.code == "session_limit"
        service.stop(ALICE, first.id)
        second, created = service.create(ALICE, "chroma", None)
        assert created
        service.stop(ALICE, second.id)


def test_run_task_failure_ends_failed_frees_the_slot_and_can_be_retried(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    # Given a profile whose task definition ECS cannot run
    broken = config.profiles["default"].model_copy(
        update={"task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/gone:1"}
    )
    service.config = config.model_copy(update={"profiles": {**config.profiles, "default": broken}})

    # When Alice starts a session, it fails with ECS's reason and nothing runs
    session, created = service.create(ALICE, "default", None)
    assert created is True
    assert session.status == Status.FAILED
    assert session.error
    assert running_tasks(aws, config) == []

    # And once the profile works again, a retry starts a new session
    service.config = config
    retry, created_again = service.create(ALICE, "default", None)
    assert created_again is True
    assert retry.id != session.id
    assert retry.status == Status.STARTING


def test_a_stalled_pending_session_is_launched_by_the_retry(
    monkeypatch: pytest.MonkeyPatch,
    service: SessionService,
    clock: FakeClock,
    aws: boto3.session.Session,
    config: SessionsConfig,
) -> None:
    # Given a launcher that stored the session and died before RunTask
    def die(**_: Any) -> None:
        raise TimeoutError("the Lambda timed out")

    with monkeypatch.context() as patch:
        patch.setattr(service.tasks, "run", die)
        with pytest.raises(TimeoutError):
            service.create(ALICE, "default", None)
    assert running_tasks(aws, config) == []

    # When the client retries within the grace period it sees the pending session...
    pending, _ = service.create(ALICE, "default", None)
    assert pending.status == Status.PENDING
    # ...and after it, the retry launches it (once)
    clock.advance(31)
    resumed, created = service.create(ALICE, "default", None)
    assert created is False
    assert resumed.id == pending.id
    assert resumed.status == Status.STARTING
    assert len(running_tasks(aws, config)) == 1


# --- status ----------------------------------------------------------------------------------


def test_get_reconciles_a_starting_session_with_ecs(service: SessionService) -> None:
    session, _ = service.create(ALICE, "default", None)
    assert session.private_ip is None
    current = service.get(ALICE, session.id)
    assert current.status == Status.RUNNING
    assert current.private_ip and current.private_ip.count(".") == 3


def test_another_users_session_is_not_found(service: SessionService) -> None:
    session, _ = service.create(ALICE, "default", None)
    for call in (service.get, service.stop, service.heartbeat):
        with pytest.raises(DomainError) as raised:
            call(BOB, session.id)
        assert status_of(raised.value) == 404


def test_list_is_newest_first_and_paginates(service: SessionService, clock: FakeClock) -> None:
    ids = []
    for profile in ("default", "chroma"):
        session, _ = service.create(ALICE, profile, None)
        service.stop(ALICE, session.id)
        ids.append(session.id)
        clock.advance(1)
    service.create(BOB, "default", None)
    first_page, token = service.list_sessions(ALICE, 1, None)
    assert [s.id for s in first_page] == [ids[1]]
    assert token
    second_page, _ = service.list_sessions(ALICE, 1, token)
    assert [s.id for s in second_page] == [ids[0]]


def test_a_token_is_only_good_for_its_user(service: SessionService, clock: FakeClock) -> None:
    from shared.pagination import InvalidToken

    service.create(ALICE, "default", None)
    clock.advance(1)
    service.create(ALICE, "chroma", None)
    _, token = service.list_sessions(ALICE, 1, None)
    assert token
    with pytest.raises(InvalidToken):
        service.list_sessions(BOB, 1, token)
    with pytest.raises(InvalidToken):
        service.list_sessions(ALICE, 1, "not-a-token")


# --- stop ------------------------------------------------------------------------------------


def test_stop_is_202_then_idempotent_and_frees_the_profile(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = service.create(ALICE, "default", None)
    stopping, accepted = service.stop(ALICE, session.id)
    assert accepted is True
    assert stopping.status == Status.STOPPING
    assert running_tasks(aws, config) == []
    again, accepted_again = service.stop(ALICE, session.id)
    assert (again.status, accepted_again) == (Status.STOPPING, True)

    # The task's STOPPED event ends it; stopping an ended session is a no-op (200)
    (task,) = tasks_in_cluster(aws, config)
    ended = service.on_task_event(task_event(task, "STOPPED", stopCode="UserInitiated"))
    assert ended and ended.status == Status.STOPPED
    final, accepted_final = service.stop(ALICE, session.id)
    assert (final.status, accepted_final) == (Status.STOPPED, False)

    # and the profile is free for a new session
    fresh, created = service.create(ALICE, "default", None)
    assert created and fresh.id != session.id


def test_heartbeat_moves_the_idle_deadline_and_refuses_ended_sessions(
    service: SessionService, clock: FakeClock
) -> None:
    session, _ = service.create(ALICE, "default", None)
    clock.advance(600)
    beaten = service.heartbeat(ALICE, session.id)
    assert beaten.idle_deadline == clock.now + 900
    service.stop(ALICE, session.id)
    with pytest.raises(DomainError) as raised:
        service.heartbeat(ALICE, session.id)
    assert (status_of(raised.value), raised.value.code) == (409, "session_ended")


# --- task events ---------------------------------------------------------------------------


def test_running_event_records_the_private_ip_and_notifies_the_owner(
    service: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    notifier: RecordingNotifier,
) -> None:
    service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    updated = service.on_task_event(task_event(task, "RUNNING"))
    assert updated and updated.status == Status.RUNNING
    assert updated.private_ip
    assert [c.status for c in notifier.changes][-1] == Status.RUNNING


def test_unrequested_stop_fails_the_session_with_the_reason(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    crashed = task_event(
        task,
        "STOPPED",
        stopCode="EssentialContainerExited",
        stoppedReason="Essential container in task exited",
        containers=[{"name": "session", "exitCode": 137}],
    )
    failed = service.on_task_event(crashed)
    assert failed and failed.status == Status.FAILED
    assert failed.error == "Essential container in task exited (exit codes [137])"


def test_late_events_do_not_move_a_session_backwards(
    service: SessionService, aws: boto3.session.Session, config: SessionsConfig
) -> None:
    session, _ = service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    service.on_task_event(task_event(task, "RUNNING"))
    late = service.on_task_event(task_event(task, "PENDING"))
    assert late and late.status == Status.RUNNING
    service.stop(ALICE, session.id)
    stale_running = service.on_task_event(task_event(task, "RUNNING"))
    assert stale_running and stale_running.status == Status.STOPPING


def test_every_event_delivered_twice_changes_nothing_the_second_time(
    service: SessionService,
    aws: boto3.session.Session,
    config: SessionsConfig,
    notifier: RecordingNotifier,
) -> None:
    """EventBridge delivers at least once (and Lambda invokes a target again when it timed
    out after its side effect): each of a session's events applied twice moves it once,
    tells its owner once, and frees its slot once."""
    session, _ = service.create(ALICE, "default", None)
    (task,) = tasks_in_cluster(aws, config)
    for event in (task_event(task, "RUNNING"), task_event(task, "RUNNING")):
        service.on_task_event(event)
    service.stop(ALICE, session.id)
    stopped = task_event(task, "STOPPED", stopCode="UserInitiated")
    for _ in range(2):
        applied = service.on_task_event(stopped)
        assert applied is not None and applied.status == Status.STOPPED
    told = [c.status for c in notifier.changes]
    assert told.count(Status.RUNNING) == 1 and told.count(Status.STOPPED) == 1
    assert counted(service.repo.table, count_key(ALICE)) == 0  # freed once, not twice


def test_events_for_tasks_berth_did_not_start_are_ignored(service: SessionService) -> None:
    foreign = {"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/x/1", "lastStatus": "RUNNING"}
    assert service.on_task_event(foreign) is None
